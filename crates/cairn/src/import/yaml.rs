//! YAML (autorestic, resticprofile) to JSON values, from yaml-rust2's event stream: the
//! first document only, plain scalars typed as YAML 1.2's core schema, aliases expanded
//! within a bound (a "billion laughs" file is an error, not a memory blow-up), and `<<`
//! merge keys applied (autorestic's documented `extras` anchors use them).

use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Event;

/// Nodes after alias expansion: far above any real config.
const MAX_NODES: usize = 200_000;
const MAX_DEPTH: usize = 64;

enum Frame {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    /// Nodes under each open frame (for anchor sizes).
    sizes: Vec<usize>,
    nodes: usize,
    doc: Option<Value>,
    docs: usize,
    error: Option<String>,
}

fn scalar(v: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(v);
    }
    match v.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = v.parse::<i64>() {
        return Value::Number(i.into());
    }
    if v.chars().any(|c| c.is_ascii_digit()) && !v.contains(':') {
        if let Some(n) = v.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(v)
}

fn key_text(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

impl Builder {
    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    fn add(&mut self, v: Value, size: usize, anchor: usize) {
        self.nodes = self.nodes.saturating_add(size);
        if self.nodes > MAX_NODES {
            self.fail("too many values (aliases expand to more than 200000): refused".into());
            return;
        }
        if let Some(s) = self.sizes.last_mut() {
            *s = s.saturating_add(size);
        }
        if anchor > 0 {
            self.anchors.insert(anchor, (v.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.docs <= 1 && self.doc.is_none() {
                    self.doc = Some(v);
                }
            }
            Some(Frame::Seq(a, _)) => a.push(v),
            Some(Frame::Map(m, key, _)) => match key.take() {
                None => match key_text(&v) {
                    Some(k) => *key = Some(k),
                    None => {
                        self.fail("a map key is not a plain value".into());
                    }
                },
                Some(k) if k == "<<" => {
                    // Merge keys: the map's own keys win.
                    let merged: Vec<Value> = match v {
                        Value::Array(a) => a,
                        v => vec![v],
                    };
                    for src in merged {
                        if let Value::Object(o) = src {
                            for (k, v) in o {
                                m.entry(k).or_insert(v);
                            }
                        }
                    }
                }
                Some(k) => {
                    m.insert(k, v);
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, _mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::DocumentStart => self.docs += 1,
            Event::Scalar(v, style, anchor, _) => self.add(scalar(v, style), 1, anchor),
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some((v, size)) => self.add(v, size, 0),
                None => self.fail("an alias names no anchor".into()),
            },
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail("nested more than 64 levels deep: refused".into());
                    return;
                }
                self.stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq(Vec::new(), anchor)
                } else {
                    Frame::Map(Map::new(), None, anchor)
                });
                self.sizes.push(1);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let size = self.sizes.pop().unwrap_or(1);
                match self.stack.pop() {
                    Some(Frame::Seq(a, anchor)) => {
                        self.nodes = self.nodes.saturating_sub(size - 1);
                        self.add(Value::Array(a), size, anchor)
                    }
                    Some(Frame::Map(m, _, anchor)) => {
                        self.nodes = self.nodes.saturating_sub(size - 1);
                        self.add(Value::Object(m), size, anchor)
                    }
                    None => self.fail("unbalanced document".into()),
                }
            }
            _ => {}
        }
    }
}

/// Parses the first YAML document of `text`; an empty document is an empty map.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, false)
        .map_err(|e| format!("not valid YAML: {e}"))?;
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(match b.doc {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_anchors_and_merge_keys() {
        let v = parse(
            "extras:\n  h: &h\n    before: [echo a]\n    n: 3\nloc:\n  <<: *h\n  n: 4\n  s: '5'\n  b: true\n  x: ~\n",
        )
        .unwrap();
        assert_eq!(v["loc"]["before"][0], "echo a");
        assert_eq!(v["loc"]["n"], 4);
        assert_eq!(v["loc"]["s"], "5");
        assert_eq!(v["loc"]["b"], true);
        assert!(v["loc"]["x"].is_null());
    }

    #[test]
    fn alias_bombs_and_garbage_are_errors_not_panics() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = (b'a' + i - 1) as char;
            let cur = (b'a' + i) as char;
            bomb.push_str(&format!(
                "{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(parse(&bomb).unwrap_err().contains("too many"));
        assert!(parse("a: [").is_err());
        assert!(parse("a: *nope").is_err());
        assert!(parse(&"[".repeat(100)).is_err());
    }
}
