//! Label selectors (`-l app=db,tier!=web,env in (prod,qa),!legacy`) and field
//! selectors (`--field-selector status.phase=Completed,spec.serverUnit!=ABGSE501`)
//! with kubectl's grammar. A field selector names a path of the kind's schema; a path
//! the kind does not have is refused (kubectl refuses unsupported fields too), so a typo
//! never silently selects nothing.

use super::explain;
use crate::api::{Kind, Resource};
use serde_json::Value;

pub use crate::api::selector::LabelSelector;

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, comma-joined.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl std::str::FromStr for FieldSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<FieldSelector, String> {
        let reqs = crate::api::selector::parse_fields(s)?;
        if reqs.is_empty() {
            return Err(format!("field selector {s:?}: expected FIELD=VALUE or FIELD!=VALUE"));
        }
        Ok(FieldSelector(
            reqs.into_iter().map(|r| (r.path.split('.').map(str::to_string).collect(), r.equal, r.value)).collect(),
        ))
    }
}

impl FieldSelector {
    /// Refuses paths that `kind`'s schema does not have, or that are not single values.
    pub fn check(&self, kind: Kind) -> Result<(), String> {
        for (path, _, _) in &self.0 {
            let dotted = path.join(".");
            let f = explain::field(kind, path)
                .map_err(|e| format!("field selector: {e} (see `sectl explain {}`)", kind.lower()))?;
            if f.shape != explain::Shape::Scalar {
                return Err(format!("field selector: {dotted} of {kind} is {}, not a single value", f.type_name));
            }
        }
        Ok(())
    }

    /// Whether `r` meets every requirement (a missing field is the empty string).
    pub fn matches(&self, r: &Resource) -> bool {
        let v = serde_json::to_value(r).unwrap_or(Value::Null);
        self.0.iter().all(|(path, eq, want)| {
            let got = path.iter().fold(&v, |v, k| &v[k.as_str()]);
            let got = match got {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                x => x.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selector_refuses_unknown_paths() {
        let ok: FieldSelector = "status.phase=Completed,metadata.name!=x".parse().unwrap();
        assert!(ok.check(Kind::LiveMigration).is_ok());
        let bad: FieldSelector = "status.phaze=Completed".parse().unwrap();
        assert!(bad.check(Kind::LiveMigration).is_err());
        let list: FieldSelector = "spec.devices=x".parse().unwrap();
        assert!(list.check(Kind::VMDefinition).is_err());
        assert!("status.phase".parse::<FieldSelector>().is_err());
    }
}
