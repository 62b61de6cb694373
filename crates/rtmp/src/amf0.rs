//! AMF0 (Action Message Format 0) values: decoding with hard limits, and encoding.
//!
//! Follows the "Action Message Format -- AMF 0" specification (Adobe, 2007). Decoding never
//! panics and never allocates more than the input can justify: every length is checked against
//! the bytes left before anything is allocated, nesting is capped at [`MAX_DEPTH`] and one
//! decode call yields at most [`MAX_VALUES`] values.

/// Deepest container nesting accepted; real commands and metadata use two or three levels.
pub const MAX_DEPTH: usize = 32;

/// Most values (containers and their members, recursively) one decode call may produce.
pub const MAX_VALUES: usize = 4096;

const MARKER_NUMBER: u8 = 0x00;
const MARKER_BOOLEAN: u8 = 0x01;
const MARKER_STRING: u8 = 0x02;
const MARKER_OBJECT: u8 = 0x03;
const MARKER_NULL: u8 = 0x05;
const MARKER_UNDEFINED: u8 = 0x06;
const MARKER_ECMA_ARRAY: u8 = 0x08;
const MARKER_OBJECT_END: u8 = 0x09;
const MARKER_STRICT_ARRAY: u8 = 0x0A;
const MARKER_DATE: u8 = 0x0B;
const MARKER_LONG_STRING: u8 = 0x0C;

/// One AMF0 value.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf0Value {
    /// IEEE 754 double (marker 0x00).
    Number(f64),
    /// Boolean (marker 0x01).
    Boolean(bool),
    /// UTF-8 string of at most 65535 bytes (marker 0x02).
    String(String),
    /// Anonymous object: ordered key/value pairs (marker 0x03).
    Object(Vec<(String, Amf0Value)>),
    /// Null (marker 0x05).
    Null,
    /// Undefined (marker 0x06).
    Undefined,
    /// Associative array (marker 0x08); the announced count is only a hint on decode.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// Dense array (marker 0x0A).
    StrictArray(Vec<Amf0Value>),
    /// Date (marker 0x0B): milliseconds since the Unix epoch and a time zone the spec says to
    /// leave at zero.
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// Time zone offset, reserved.
        tz: i16,
    },
    /// String longer than 65535 bytes (marker 0x0C).
    LongString(String),
}

impl Amf0Value {
    /// Builds an [`Amf0Value::Object`] from key/value pairs, keeping their order.
    pub fn object<K, I>(pairs: I) -> Amf0Value
    where
        K: Into<String>,
        I: IntoIterator<Item = (K, Amf0Value)>,
    {
        Amf0Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Builds an [`Amf0Value::EcmaArray`] from key/value pairs, keeping their order.
    pub fn ecma_array<K, I>(pairs: I) -> Amf0Value
    where
        K: Into<String>,
        I: IntoIterator<Item = (K, Amf0Value)>,
    {
        Amf0Value::EcmaArray(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The text of a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a `Number`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The first property named `key` of an `Object` or `EcmaArray`.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => {
                props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// True for `Null` and `Undefined`.
    pub fn is_null(&self) -> bool {
        matches!(self, Amf0Value::Null | Amf0Value::Undefined)
    }
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Amf0Value::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Amf0Value::String(s)
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Amf0Value::Number(n)
    }
}

impl From<u32> for Amf0Value {
    fn from(n: u32) -> Self {
        Amf0Value::Number(f64::from(n))
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Amf0Value::Boolean(b)
    }
}

/// Errors from decoding AMF0; every offset is from the start of the buffer given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Amf0Error {
    /// The buffer ended inside a value.
    #[error("amf0: truncated {what} at byte {offset}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Offset of the first missing byte.
        offset: usize,
    },
    /// A type marker this decoder does not handle (reference, movieclip, AVM+ switch, ...).
    #[error("amf0: unsupported type marker {marker:#04x} at byte {offset}")]
    UnsupportedMarker {
        /// The marker byte.
        marker: u8,
        /// Offset of the marker.
        offset: usize,
    },
    /// An object-end marker where a value was expected.
    #[error("amf0: unexpected object-end marker at byte {offset}")]
    UnexpectedObjectEnd {
        /// Offset of the marker.
        offset: usize,
    },
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error("amf0: nesting deeper than {MAX_DEPTH} at byte {offset}")]
    TooDeep {
        /// Offset of the container that crossed the limit.
        offset: usize,
    },
    /// More than [`MAX_VALUES`] values in one decode call, or an array count beyond that.
    #[error("amf0: more than {MAX_VALUES} values at byte {offset}")]
    TooManyValues {
        /// Offset where the limit was crossed.
        offset: usize,
    },
}

/// Decodes every value in `buf`, as found in a command or data message body.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut d = Decoder {
        buf,
        pos: 0,
        values: 0,
    };
    let mut out = Vec::new();
    while d.pos < buf.len() {
        out.push(d.value(0)?);
    }
    Ok(out)
}

/// Decodes one value at `*pos`, advancing `*pos` past it only on success.
pub fn decode_one(buf: &[u8], pos: &mut usize) -> Result<Amf0Value, Amf0Error> {
    let mut d = Decoder {
        buf,
        pos: *pos,
        values: 0,
    };
    let v = d.value(0)?;
    *pos = d.pos;
    Ok(v)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    values: usize,
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Amf0Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(Amf0Error::Truncated {
                what,
                offset: self.buf.len(),
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Amf0Error> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Amf0Error> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn f64(&mut self, what: &'static str) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.array(what)?))
    }

    /// Reads `len` bytes as text. OBS plugins and hardware encoders have been seen sending
    /// Latin-1 in `flashVer`/metadata; replacing bad sequences keeps the session alive.
    fn text(&mut self, len: usize, what: &'static str) -> Result<String, Amf0Error> {
        let raw = self.take(len, what)?;
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    fn short_string(&mut self, what: &'static str) -> Result<String, Amf0Error> {
        let len = self.u16(what)?;
        self.text(usize::from(len), what)
    }

    fn count_value(&mut self, offset: usize) -> Result<(), Amf0Error> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(Amf0Error::TooManyValues { offset });
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        let start = self.pos;
        let marker = self.u8("type marker")?;
        self.count_value(start)?;
        match marker {
            MARKER_NUMBER => Ok(Amf0Value::Number(self.f64("number")?)),
            MARKER_BOOLEAN => Ok(Amf0Value::Boolean(self.u8("boolean")? != 0)),
            MARKER_STRING => Ok(Amf0Value::String(self.short_string("string")?)),
            MARKER_OBJECT => {
                let depth = self.enter(depth, start)?;
                Ok(Amf0Value::Object(self.properties(depth, None)?))
            }
            MARKER_NULL => Ok(Amf0Value::Null),
            MARKER_UNDEFINED => Ok(Amf0Value::Undefined),
            MARKER_ECMA_ARRAY => {
                let depth = self.enter(depth, start)?;
                let count = self.u32("ecma array count")?;
                Ok(Amf0Value::EcmaArray(self.properties(depth, Some(count))?))
            }
            MARKER_STRICT_ARRAY => {
                let depth = self.enter(depth, start)?;
                let count = self.u32("strict array count")?;
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                // Every value takes at least one byte, so a count beyond the bytes left (or the
                // value cap) is a lie we refuse before reserving memory for it.
                if count > MAX_VALUES {
                    return Err(Amf0Error::TooManyValues { offset: start });
                }
                if count > self.buf.len() - self.pos {
                    return Err(Amf0Error::Truncated {
                        what: "strict array",
                        offset: self.buf.len(),
                    });
                }
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth)?);
                }
                Ok(Amf0Value::StrictArray(items))
            }
            MARKER_DATE => {
                let millis = self.f64("date")?;
                let tz = i16::from_be_bytes(self.array("date time zone")?);
                Ok(Amf0Value::Date { millis, tz })
            }
            MARKER_LONG_STRING => {
                let len = self.u32("long string")?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                Ok(Amf0Value::LongString(self.text(len, "long string")?))
            }
            MARKER_OBJECT_END => Err(Amf0Error::UnexpectedObjectEnd { offset: start }),
            // Movieclip (0x04), reference (0x07), unsupported (0x0D), recordset (0x0E), XML
            // (0x0F), typed object (0x10), AVM+ switch (0x11) and anything unknown: no RTMP peer
            // we serve needs them, and guessing their length would desynchronise the rest.
            _ => Err(Amf0Error::UnsupportedMarker {
                marker,
                offset: start,
            }),
        }
    }

    fn enter(&self, depth: usize, offset: usize) -> Result<usize, Amf0Error> {
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(Amf0Error::TooDeep { offset });
        }
        Ok(depth)
    }

    /// Reads `key, value` pairs up to the `00 00 09` end marker. `announced` is the ECMA array
    /// count, trusted only for one quirk: some encoders (older Wirecast, several hardware boxes)
    /// end the last message body right after the last entry without the end marker.
    fn properties(
        &mut self,
        depth: usize,
        announced: Option<u32>,
    ) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            if self.pos == self.buf.len()
                && announced.is_some_and(|n| usize::try_from(n).is_ok_and(|n| props.len() >= n))
            {
                return Ok(props);
            }
            let key = self.short_string("property name")?;
            if key.is_empty() && self.buf.get(self.pos) == Some(&MARKER_OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let value = self.value(depth)?;
            props.push((key, value));
        }
    }
}

/// Appends the encoding of every value in `values` to `out`.
pub fn encode_all(values: &[Amf0Value], out: &mut Vec<u8>) {
    for v in values {
        encode(v, out);
    }
}

/// Appends the AMF0 encoding of `value` to `out`.
///
/// A `String` longer than 65535 bytes is written as a long string, and an over-long property
/// name is cut at a character boundary, so the output is always well formed.
pub fn encode(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(n) => {
            out.push(MARKER_NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => {
            out.push(MARKER_BOOLEAN);
            out.push(u8::from(*b));
        }
        Amf0Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(MARKER_STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => encode_long_string(s, out),
        },
        Amf0Value::Object(props) => {
            out.push(MARKER_OBJECT);
            encode_properties(props, out);
        }
        Amf0Value::Null => out.push(MARKER_NULL),
        Amf0Value::Undefined => out.push(MARKER_UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.push(MARKER_ECMA_ARRAY);
            let count = u32::try_from(props.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            encode_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.push(MARKER_STRICT_ARRAY);
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, tz } => {
            out.push(MARKER_DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&tz.to_be_bytes());
        }
        Amf0Value::LongString(s) => encode_long_string(s, out),
    }
}

fn encode_long_string(s: &str, out: &mut Vec<u8>) {
    // Strings over 4 GiB cannot be framed; cutting them keeps the output parseable.
    let bytes = truncate_utf8(s, u32::MAX as usize);
    out.push(MARKER_LONG_STRING);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn encode_properties(props: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (key, value) in props {
        let key = truncate_utf8(key, usize::from(u16::MAX));
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        encode(value, out);
    }
    out.extend_from_slice(&[0, 0, MARKER_OBJECT_END]);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &[u8] {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECT: &[u8] = include_bytes!("../../../testdata/ffmpeg-connect.amf0");
    const ON_METADATA: &[u8] = include_bytes!("../../../testdata/ffmpeg-onmetadata.amf0");

    fn round_trip(v: &Amf0Value) {
        let mut out = Vec::new();
        encode(v, &mut out);
        let mut pos = 0;
        assert_eq!(&decode_one(&out, &mut pos).unwrap(), v);
        assert_eq!(pos, out.len());
    }

    fn every_type() -> Amf0Value {
        Amf0Value::object([
            ("n", 1.5.into()),
            ("neg", (-0.25).into()),
            ("t", true.into()),
            ("f", false.into()),
            ("s", "héllo".into()),
            ("empty", "".into()),
            ("null", Amf0Value::Null),
            ("undef", Amf0Value::Undefined),
            (
                "ecma",
                Amf0Value::ecma_array([
                    ("a", 1.0.into()),
                    ("b", Amf0Value::object([("c", "d".into())])),
                ]),
            ),
            (
                "strict",
                Amf0Value::StrictArray(vec![
                    1.0.into(),
                    "x".into(),
                    Amf0Value::StrictArray(vec![]),
                ]),
            ),
            (
                "date",
                Amf0Value::Date {
                    millis: 1.7e12,
                    tz: 0,
                },
            ),
            ("long", Amf0Value::LongString("L".repeat(10))),
            ("", Amf0Value::Object(vec![])),
        ])
    }

    #[test]
    fn round_trips_every_type() {
        for v in [
            Amf0Value::Number(0.0),
            Amf0Value::Number(f64::MAX),
            Amf0Value::Boolean(true),
            "abc".into(),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::Object(vec![]),
            Amf0Value::EcmaArray(vec![]),
            Amf0Value::StrictArray(vec![]),
            Amf0Value::Date {
                millis: -1.0,
                tz: -60,
            },
            Amf0Value::LongString(String::new()),
            every_type(),
            Amf0Value::StrictArray(vec![every_type(), every_type()]),
        ] {
            round_trip(&v);
        }
    }

    #[test]
    fn encode_all_decode_all() {
        let values = vec!["connect".into(), 1.0.into(), every_type(), Amf0Value::Null];
        let mut out = Vec::new();
        encode_all(&values, &mut out);
        assert_eq!(decode_all(&out).unwrap(), values);
        assert_eq!(decode_all(&[]).unwrap(), vec![]);
    }

    #[test]
    fn known_bytes() {
        let mut out = Vec::new();
        encode(&Amf0Value::object([("a", true.into())]), &mut out);
        assert_eq!(out, [0x03, 0, 1, b'a', 0x01, 0x01, 0, 0, 0x09]);
        out.clear();
        encode(&1.0.into(), &mut out);
        assert_eq!(out, [0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn long_short_string_becomes_long_string() {
        let s = "x".repeat(70_000);
        let mut out = Vec::new();
        encode(&Amf0Value::String(s.clone()), &mut out);
        assert_eq!(out[0], MARKER_LONG_STRING);
        assert_eq!(decode_all(&out).unwrap(), vec![Amf0Value::LongString(s)]);
    }

    #[test]
    fn long_key_is_cut_on_char_boundary() {
        let key = "é".repeat(40_000); // 80000 bytes
        let mut out = Vec::new();
        encode(&Amf0Value::object([(key, Amf0Value::Null)]), &mut out);
        let v = decode_all(&out).unwrap();
        let Amf0Value::Object(props) = &v[0] else {
            panic!("not an object")
        };
        assert_eq!(props[0].0.len(), 65534);
    }

    #[test]
    fn deep_nesting_errors_without_overflow() {
        let mut buf = vec![MARKER_OBJECT; 1];
        for _ in 0..1000 {
            buf.extend_from_slice(&[0, 1, b'k', MARKER_OBJECT]);
        }
        assert!(matches!(decode_all(&buf), Err(Amf0Error::TooDeep { .. })));
        let buf = [MARKER_STRICT_ARRAY, 0, 0, 0, 1].repeat(1000);
        assert!(matches!(
            decode_all(&buf),
            Err(Amf0Error::TooDeep { offset: 160 })
        ));

        // Exactly MAX_DEPTH levels is fine.
        let mut v = Amf0Value::Null;
        for _ in 0..MAX_DEPTH {
            v = Amf0Value::StrictArray(vec![v]);
        }
        round_trip(&v);
        let v = Amf0Value::StrictArray(vec![v]);
        let mut out = Vec::new();
        encode(&v, &mut out);
        assert!(matches!(
            decode_all(&out),
            Err(Amf0Error::TooDeep { offset: 160 })
        ));
    }

    #[test]
    fn value_count_is_capped() {
        let mut buf = vec![MARKER_NULL; MAX_VALUES + 1];
        assert!(matches!(
            decode_all(&buf),
            Err(Amf0Error::TooManyValues { offset }) if offset == MAX_VALUES
        ));
        buf.pop();
        assert_eq!(decode_all(&buf).unwrap().len(), MAX_VALUES);
    }

    #[test]
    fn lying_lengths_do_not_allocate() {
        // Strict array claiming 4 billion entries, long string claiming 4 GiB.
        assert!(matches!(
            decode_all(&[MARKER_STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff, 5]),
            Err(Amf0Error::TooManyValues { offset: 0 })
        ));
        assert!(matches!(
            decode_all(&[MARKER_STRICT_ARRAY, 0, 0, 0x10, 0, 5]),
            Err(Amf0Error::Truncated { .. })
        ));
        assert_eq!(
            decode_all(&[MARKER_LONG_STRING, 0xff, 0xff, 0xff, 0xff, b'a']),
            Err(Amf0Error::Truncated {
                what: "long string",
                offset: 6
            })
        );
        assert_eq!(
            decode_all(&[MARKER_STRING, 0, 5, b'a']),
            Err(Amf0Error::Truncated {
                what: "string",
                offset: 4
            })
        );
    }

    #[test]
    fn unsupported_markers_report_offset() {
        for marker in [0x04, 0x07, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0xff] {
            assert_eq!(
                decode_all(&[MARKER_NULL, marker, 0, 0]),
                Err(Amf0Error::UnsupportedMarker { marker, offset: 1 })
            );
        }
        assert_eq!(
            decode_all(&[MARKER_NULL, MARKER_OBJECT_END]),
            Err(Amf0Error::UnexpectedObjectEnd { offset: 1 })
        );
    }

    #[test]
    fn decode_one_leaves_pos_on_error() {
        let buf = [MARKER_NULL, MARKER_STRING, 0, 9];
        let mut pos = 0;
        assert_eq!(decode_one(&buf, &mut pos).unwrap(), Amf0Value::Null);
        assert_eq!(pos, 1);
        assert!(decode_one(&buf, &mut pos).is_err());
        assert_eq!(pos, 1);
        pos = 99;
        assert!(decode_one(&buf, &mut pos).is_err());
    }

    #[test]
    fn latin1_is_decoded_lossily() {
        // "Caf\xe9" as an OBS plugin on Windows sent it.
        let buf = [MARKER_STRING, 0, 4, b'C', b'a', b'f', 0xe9];
        assert_eq!(decode_all(&buf).unwrap(), vec!["Caf\u{fffd}".into()]);
    }

    #[test]
    fn ecma_array_count_lies() {
        // Count says 5, one entry, proper end marker (librtmp-based encoders write 0).
        let buf = [
            MARKER_ECMA_ARRAY,
            0,
            0,
            0,
            5,
            0,
            1,
            b'a',
            MARKER_NULL,
            0,
            0,
            MARKER_OBJECT_END,
            MARKER_NULL,
        ];
        assert_eq!(
            decode_all(&buf).unwrap(),
            vec![
                Amf0Value::ecma_array([("a", Amf0Value::Null)]),
                Amf0Value::Null
            ]
        );
        // Count says 1 and the body ends without the end marker.
        let buf = [MARKER_ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'a', MARKER_NULL];
        assert_eq!(
            decode_all(&buf).unwrap(),
            vec![Amf0Value::ecma_array([("a", Amf0Value::Null)])]
        );
        // An object (no count) must still have its end marker.
        let buf = [MARKER_OBJECT, 0, 1, b'a', MARKER_NULL];
        assert!(matches!(decode_all(&buf), Err(Amf0Error::Truncated { .. })));
    }

    #[test]
    fn truncation_at_every_offset_never_panics() {
        let mut full = Vec::new();
        encode_all(&["x".into(), every_type()], &mut full);
        for buf in [&full[..], CONNECT, ON_METADATA] {
            for len in 0..buf.len() {
                let r = decode_all(&buf[..len]);
                // A cut between two top-level values is a valid shorter list.
                if let Ok(v) = r {
                    assert!(v.len() <= 2);
                }
            }
        }
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        for buf in [CONNECT, ON_METADATA] {
            for i in 0..buf.len() {
                for b in [0x00, 0x03, 0x08, 0x09, 0x0a, 0x0c, 0xff] {
                    let mut m = buf.to_vec();
                    m[i] = b;
                    let _ = decode_all(&m);
                }
            }
        }
    }

    #[test]
    fn ffmpeg_connect() {
        let v = decode_all(CONNECT).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].as_str(), Some("connect"));
        assert_eq!(v[1].as_f64(), Some(1.0));
        let obj = &v[2];
        assert_eq!(obj.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert_eq!(
            obj.get("type").and_then(Amf0Value::as_str),
            Some("nonprivate")
        );
        assert_eq!(
            obj.get("flashVer").and_then(Amf0Value::as_str),
            Some("FMLE/3.0 (compatible; Lavf59.27.100)")
        );
        assert_eq!(
            obj.get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://127.0.0.1:19350/live")
        );
        let mut out = Vec::new();
        encode_all(&v, &mut out);
        assert_eq!(out, CONNECT);
    }

    #[test]
    fn ffmpeg_onmetadata() {
        let v = decode_all(ON_METADATA).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].as_str(), Some("onMetaData"));
        let m = &v[1];
        assert!(matches!(m, Amf0Value::EcmaArray(p) if p.len() == 13));
        assert_eq!(m.get("width").and_then(Amf0Value::as_f64), Some(320.0));
        assert_eq!(m.get("height").and_then(Amf0Value::as_f64), Some(240.0));
        assert_eq!(m.get("framerate").and_then(Amf0Value::as_f64), Some(25.0));
        assert_eq!(m.get("videocodecid").and_then(Amf0Value::as_f64), Some(7.0));
        assert_eq!(
            m.get("audiocodecid").and_then(Amf0Value::as_f64),
            Some(10.0)
        );
        assert_eq!(
            m.get("audiosamplerate").and_then(Amf0Value::as_f64),
            Some(44100.0)
        );
        assert_eq!(m.get("stereo").and_then(Amf0Value::as_bool), Some(false));
        assert!(m.get("missing").is_none());
        let mut out = Vec::new();
        encode_all(&v, &mut out);
        assert_eq!(out, ON_METADATA);
    }
}
