//! Refuses non-finite numbers before anything is written. serde_json writes NaN and
//! ±infinity as `null`, which no longer decodes as a number: one such value would make
//! the object (or a part of the simulated world) unreadable from then on. So every
//! value the store writes is first walked by this serializer, which only looks at the
//! numbers and fails on the first one that is not finite, naming its field path.
//!
//! Trade-off: one extra walk over the value per write (no allocation but the path of
//! the current field) instead of a decode round trip.

use serde::ser::{self, Serialize};
use std::fmt;

/// The first non-finite number found, with the path of its field.
#[derive(Debug)]
pub struct NonFinite(pub String);

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NonFinite {}

impl ser::Error for NonFinite {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NonFinite(msg.to_string())
    }
}

/// Ok when every number in `v` is finite; else the field path and value of the first
/// that is not, e.g. `spec.islE.bandwidthGbps is inf`.
pub fn check<T: Serialize + ?Sized>(v: &T) -> Result<(), NonFinite> {
    let mut c = Checker { path: Vec::new() };
    v.serialize(&mut c)
}

struct Checker {
    path: Vec<String>,
}

impl Checker {
    fn float(&self, f: f64) -> Result<(), NonFinite> {
        if f.is_finite() {
            return Ok(());
        }
        let path = if self.path.is_empty() { "the value".to_string() } else { self.path.join(".") };
        Err(NonFinite(format!("{path} is {f}, which is not a finite number")))
    }

    fn nested<T: Serialize + ?Sized>(&mut self, key: String, v: &T) -> Result<(), NonFinite> {
        self.path.push(key);
        let r = v.serialize(&mut *self);
        self.path.pop();
        r
    }
}

macro_rules! ok_scalars {
    ($($f:ident: $t:ty),*) => {
        $(fn $f(self, _: $t) -> Result<(), NonFinite> { Ok(()) })*
    };
}

impl<'a> ser::Serializer for &'a mut Checker {
    type Ok = ();
    type Error = NonFinite;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Seq<'a>;
    type SerializeStructVariant = Seq<'a>;

    ok_scalars!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_char: char,
        serialize_str: &str, serialize_bytes: &[u8]);

    fn serialize_f32(self, v: f32) -> Result<(), NonFinite> {
        self.float(v as f64)
    }
    fn serialize_f64(self, v: f64) -> Result<(), NonFinite> {
        self.float(v)
    }
    fn serialize_none(self) -> Result<(), NonFinite> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), NonFinite> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), NonFinite> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), NonFinite> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), NonFinite> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), NonFinite> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), NonFinite> {
        self.nested(variant.to_string(), v)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, NonFinite> {
        Ok(Seq { c: self, i: 0 })
    }
    fn serialize_tuple(self, _: usize) -> Result<Seq<'a>, NonFinite> {
        Ok(Seq { c: self, i: 0 })
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Seq<'a>, NonFinite> {
        Ok(Seq { c: self, i: 0 })
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Seq<'a>, NonFinite> {
        Ok(Seq { c: self, i: 0 })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'a>, NonFinite> {
        Ok(Map { c: self, key: None })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Seq<'a>, NonFinite> {
        Ok(Seq { c: self, i: 0 })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Seq<'a>, NonFinite> {
        Ok(Seq { c: self, i: 0 })
    }
}

/// Sequences, tuples and structs: elements by index, fields by name.
struct Seq<'a> {
    c: &'a mut Checker,
    i: usize,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NonFinite> {
        let key = format!("[{}]", self.i);
        self.i += 1;
        self.c.nested(key, v)
    }
}

macro_rules! seq_like {
    ($($tr:ident :: $f:ident),*) => {
        $(impl ser::$tr for Seq<'_> {
            type Ok = ();
            type Error = NonFinite;
            fn $f<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NonFinite> {
                self.element(v)
            }
            fn end(self) -> Result<(), NonFinite> {
                Ok(())
            }
        })*
    };
}

seq_like!(SerializeSeq::serialize_element, SerializeTuple::serialize_element, SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field);

macro_rules! struct_like {
    ($($tr:ident),*) => {
        $(impl ser::$tr for Seq<'_> {
            type Ok = ();
            type Error = NonFinite;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), NonFinite> {
                self.c.nested(key.to_string(), v)
            }
            fn end(self) -> Result<(), NonFinite> {
                Ok(())
            }
        })*
    };
}

struct_like!(SerializeStruct, SerializeStructVariant);

/// Maps: values by their key (keys are strings here).
struct Map<'a> {
    c: &'a mut Checker,
    key: Option<String>,
}

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), NonFinite> {
        self.key = Some(serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default());
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NonFinite> {
        let key = self.key.take().unwrap_or_default();
        self.c.nested(key, v)
    }
    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    struct Inner {
        #[serde(rename = "bandwidthGbps")]
        bw: f64,
    }

    #[derive(serde::Serialize)]
    struct Outer {
        name: String,
        links: BTreeMap<String, Inner>,
        rates: Vec<f64>,
    }

    #[test]
    fn finite_values_pass_and_others_are_named_by_path() {
        let mut links = BTreeMap::new();
        links.insert("mc".to_string(), Inner { bw: 10.0 });
        let mut o = Outer { name: "x".into(), links, rates: vec![1.0, 2.5] };
        assert!(check(&o).is_ok());
        o.rates[1] = f64::NAN;
        assert_eq!(check(&o).unwrap_err().0, "rates.[1] is NaN, which is not a finite number");
        o.rates[1] = 0.0;
        o.links.get_mut("mc").unwrap().bw = f64::INFINITY;
        assert_eq!(check(&o).unwrap_err().0, "links.mc.bandwidthGbps is inf, which is not a finite number");
    }
}
