//! A small, lenient JSON reader for golden files.
//!
//! Why not serde_json: the goldens need three things it does not give.
//! * Numbers as their text. Scores are compared bit for bit, and serde_json without its
//!   `float_roundtrip` feature may parse a decimal one ULP off; `str::parse::<f64>` is exact.
//! * Objects as ordered pairs. A golden object is a key→value listing; duplicates (the same
//!   key in two databases of a flattened dump) must not silently overwrite each other.
//! * redis-rdb-cli's escapes: its JSON writes bytes as `\xNN` and BEL as `\a`, and Java
//!   prints non-finite doubles as `Infinity`/`NaN`. These are accepted only when asked.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number exactly as written (also `Infinity`, `-Infinity`, `NaN` in lenient mode).
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// What beyond RFC 8259 to accept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dialect {
    /// `\xNN` (the byte NN, read as the character U+00NN), `\a` (U+0007), and the bare
    /// words `Infinity`, `-Infinity` and `NaN` as numbers.
    pub rdb_cli_escapes: bool,
}

#[derive(Debug)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

/// Parses one JSON value that must fill `text` (surrounding white space allowed).
pub fn parse(text: &str, dialect: Dialect) -> Result<Json, ParseError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
        dialect,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("unexpected text after the value"));
    }
    Ok(v)
}

impl Json {
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_arr(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_obj(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Obj(o) => Some(o),
            _ => None,
        }
    }
    /// The text of a number.
    pub fn as_num(&self) -> Option<&str> {
        match self {
            Json::Num(n) => Some(n),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        self.as_num()?.parse().ok()
    }
    pub fn as_u64(&self) -> Option<u64> {
        self.as_num()?.parse().ok()
    }
}

/// The items of an array; none when `j` is absent or not an array (goldens written with
/// Go's `omitempty` leave out empty lists).
pub fn items(j: Option<&Json>) -> &[Json] {
    j.and_then(Json::as_arr).unwrap_or_default()
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    dialect: Dialect,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            offset: self.i,
            message: message.into(),
        }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Json, ParseError> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return Err(self.err("unexpected end of input"));
        };
        match c {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(Json::Str),
            b'-' | b'0'..=b'9' | b'I' | b'N' => self.number(),
            _ if self.eat("null") => Ok(Json::Null),
            _ if self.eat("true") => Ok(Json::Bool(true)),
            _ if self.eat("false") => Ok(Json::Bool(false)),
            _ => Err(self.err(format!("unexpected character {:?}", c as char))),
        }
    }

    fn object(&mut self) -> Result<Json, ParseError> {
        self.i += 1;
        let mut pairs = Vec::new();
        self.ws();
        if self.eat("}") {
            return Ok(Json::Obj(pairs));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return Err(self.err("expected a string key"));
            }
            let k = self.string()?;
            self.ws();
            if !self.eat(":") {
                return Err(self.err("expected ':'"));
            }
            let v = self.value()?;
            pairs.push((k, v));
            self.ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                return Ok(Json::Obj(pairs));
            }
            return Err(self.err("expected ',' or '}'"));
        }
    }

    fn array(&mut self) -> Result<Json, ParseError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat("]") {
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("]") {
                return Ok(Json::Arr(items));
            }
            return Err(self.err("expected ',' or ']'"));
        }
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.i;
        if self.dialect.rdb_cli_escapes {
            for word in ["Infinity", "-Infinity", "NaN"] {
                if self.eat(word) {
                    return Ok(Json::Num(word.to_string()));
                }
            }
        }
        if self.s[self.i] == b'-' {
            self.i += 1;
        }
        while self.i < self.s.len()
            && matches!(
                self.s[self.i],
                b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'
            )
        {
            self.i += 1;
        }
        let text = &self.text[start..self.i];
        if text.parse::<f64>().is_err() {
            self.i = start;
            return Err(self.err(format!("bad number {text:?}")));
        }
        Ok(Json::Num(text.to_string()))
    }

    fn hex(&mut self, digits: usize) -> Result<u32, ParseError> {
        let h = self
            .text
            .get(self.i..self.i + digits)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad hex escape"))?;
        self.i += digits;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let run = self.i;
            while self.i < self.s.len() && !matches!(self.s[self.i], b'"' | b'\\') {
                self.i += 1;
            }
            out.push_str(&self.text[run..self.i]);
            match self.s.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(_) => {
                    let esc = *self
                        .s
                        .get(self.i + 1)
                        .ok_or_else(|| self.err("unterminated escape"))?;
                    self.i += 2;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut c = self.hex(4)?;
                            if (0xD800..0xDC00).contains(&c) && self.eat("\\u") {
                                let lo = self.hex(4)?;
                                c = 0x10000
                                    + ((c - 0xD800) << 10)
                                    + (lo.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                        }
                        b'x' if self.dialect.rdb_cli_escapes => {
                            let b = self.hex(2)?;
                            out.push(char::from_u32(b).unwrap_or('\u{FFFD}'));
                        }
                        b'a' if self.dialect.rdb_cli_escapes => out.push('\u{7}'),
                        other => {
                            self.i -= 2;
                            return Err(self.err(format!("unknown escape \\{}", other as char)));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_number_text_and_duplicate_keys() {
        let v = parse(
            r#"{"a": 1.10, "a": -0, "b": [1e3, "x\u00ffy"]}"#,
            Dialect::default(),
        )
        .expect("valid JSON");
        let pairs = v.as_obj().expect("object");
        assert_eq!(pairs[0], ("a".into(), Json::Num("1.10".into())));
        assert_eq!(pairs[1], ("a".into(), Json::Num("-0".into())));
        let b = pairs[2].1.as_arr().expect("array");
        assert_eq!(b[1], Json::Str("x\u{ff}y".into()));
    }

    #[test]
    fn rdb_cli_escapes_only_when_asked() {
        let text = r#"["\x0f\a", Infinity]"#;
        assert!(parse(text, Dialect::default()).is_err());
        let v = parse(
            text,
            Dialect {
                rdb_cli_escapes: true,
            },
        )
        .expect("lenient JSON");
        assert_eq!(
            v,
            Json::Arr(vec![
                Json::Str("\u{f}\u{7}".into()),
                Json::Num("Infinity".into())
            ])
        );
    }
}
