//! Refuses non-finite numbers before anything is written. serde_json writes NaN and
//! ±infinity as `null`, which no longer decodes as a number: one such value would make
//! the object (or a part of the simulated world) unreadable from then on. So every
//! value the store writes is first walked by this serializer, which only looks at the
//! numbers and fails on the first one that is not finite, naming its field path.
//!
//! Trade-off: one extra walk over the value per write instead of a decode round trip.
//! The walk allocates nothing per field: the path is kept as field names, indexes and
//! map keys (as JSON, in buffers reused from entry to entry) and written out only for
//! the error. Writers that encode anyway use `encode`: it watches serde_json write its
//! `null`s (where a non-finite number would have gone) and walks the value only when
//! it wrote one, so the stored objects, which hold no nulls, are not walked twice.

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

/// `serde_json::to_vec(v)` (the same bytes) when every number in `v` is finite; else
/// the error of `check`. serde_json writes a non-finite number as `null`, so only an
/// encoding that wrote a `null` is walked by `check` (a real null passes it).
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, NonFinite> {
    let mut wrote_null = false;
    let mut out = Vec::with_capacity(1024);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, NullSeen(&mut wrote_null));
    v.serialize(&mut ser).map_err(|e| NonFinite(e.to_string()))?;
    if wrote_null {
        check(v)?;
    }
    Ok(out)
}

/// serde_json's compact formatter that notes whether it wrote a `null`.
struct NullSeen<'a>(&'a mut bool);

impl serde_json::ser::Formatter for NullSeen<'_> {
    fn write_null<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        *self.0 = true;
        writer.write_all(b"null")
    }
}

/// One step of the path to the current value.
enum Seg {
    /// A struct's field or an enum's variant.
    Field(&'static str),
    /// A sequence's element.
    Index(usize),
    /// A map's entry: its key as JSON (a key that is not a string shows as nothing).
    Key(Vec<u8>),
}

impl Seg {
    fn render(&self) -> String {
        match self {
            Seg::Field(f) => f.to_string(),
            Seg::Index(i) => format!("[{i}]"),
            Seg::Key(json) => serde_json::from_slice::<String>(json).unwrap_or_default(),
        }
    }
}

struct Checker {
    path: Vec<Seg>,
}

impl Checker {
    fn float(&self, f: f64) -> Result<(), NonFinite> {
        if f.is_finite() {
            return Ok(());
        }
        let path = if self.path.is_empty() {
            "the value".to_string()
        } else {
            self.path.iter().map(Seg::render).collect::<Vec<_>>().join(".")
        };
        Err(NonFinite(format!("{path} is {f}, which is not a finite number")))
    }

    /// Walks `v` one step further down; gives back the step (a map key's buffer is
    /// reused for the next entry).
    fn nested<T: Serialize + ?Sized>(&mut self, seg: Seg, v: &T) -> (Result<(), NonFinite>, Option<Seg>) {
        self.path.push(seg);
        let r = v.serialize(&mut *self);
        (r, self.path.pop())
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
        self.nested(Seg::Field(variant), v).0
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
        Ok(Map { c: self, key: Vec::new() })
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
        let seg = Seg::Index(self.i);
        self.i += 1;
        self.c.nested(seg, v).0
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

seq_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! struct_like {
    ($($tr:ident),*) => {
        $(impl ser::$tr for Seq<'_> {
            type Ok = ();
            type Error = NonFinite;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), NonFinite> {
                self.c.nested(Seg::Field(key), v).0
            }
            fn end(self) -> Result<(), NonFinite> {
                Ok(())
            }
        })*
    };
}

struct_like!(SerializeStruct, SerializeStructVariant);

/// Maps: values by their key (keys are strings here), kept as JSON until needed.
struct Map<'a> {
    c: &'a mut Checker,
    key: Vec<u8>,
}

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), NonFinite> {
        self.key.clear();
        if serde_json::to_writer(&mut self.key, k).is_err() {
            self.key.clear();
        }
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NonFinite> {
        let key = std::mem::take(&mut self.key);
        let (r, seg) = self.c.nested(Seg::Key(key), v);
        if let Some(Seg::Key(buf)) = seg {
            self.key = buf;
        }
        r
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

    #[derive(serde::Serialize)]
    struct WithNull {
        rate: f64,
        note: Option<String>,
        any: serde_json::Value,
        small: f32,
    }

    #[test]
    fn encode_gives_serde_jsons_bytes_and_refuses_what_check_refuses() {
        let mut links = BTreeMap::new();
        links.insert("mc".to_string(), Inner { bw: 10.0 });
        let mut o = Outer { name: "x\"y".into(), links, rates: vec![1.0, 2.5e-300, -0.0] };
        assert_eq!(encode(&o).unwrap(), serde_json::to_vec(&o).unwrap());
        o.rates[2] = f64::NEG_INFINITY;
        assert_eq!(encode(&o).unwrap_err().0, check(&o).unwrap_err().0);
        assert!(encode(&o).unwrap_err().0.starts_with("rates.[2] is -inf"));
        // Real nulls are written as they are and pass.
        let mut w = WithNull { rate: 1.5, note: None, any: serde_json::Value::Null, small: 0.25 };
        assert_eq!(encode(&w).unwrap(), serde_json::to_vec(&w).unwrap());
        assert!(String::from_utf8(encode(&w).unwrap()).unwrap().contains("\"note\":null"));
        // A non-finite number beside real nulls is still found (f32 too).
        w.small = f32::NAN;
        assert_eq!(encode(&w).unwrap_err().0, "small is NaN, which is not a finite number");
        w.small = 0.0;
        w.rate = f64::INFINITY;
        assert_eq!(encode(&w).unwrap_err().0, "rate is inf, which is not a finite number");
    }
}
