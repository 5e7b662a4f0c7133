//! YAML parameter files (a TensorBoard run's `params.yaml` or `hparams.yaml`, as PyTorch
//! Lightning and most training scripts write them), read from `saphyr-parser`'s events (why that
//! crate: the crate docs).
//!
//! The document is one mapping. Nested mappings give dotted names, a list of scalars one text
//! parameter, each scalar typed by [`crate::params::value`]: a plain scalar by its spelling, a
//! quoted or block one as text, `~`, `null` and an empty value as no value. Core-schema tags
//! (`!!str`, `!!int`, ...) are honoured and PyYAML's `!!python/tuple` is a list; any other tag
//! (`!!python/object:...`), an alias (`*name`), a complex key, a list of lists or mappings and a
//! second document are refused with the line, the key and a fix.

use std::path::Path;

use horizon_core::{ParamValue, Params};
use saphyr_parser::{Event, Parser, ScalarStyle, StrInput, Tag};

use crate::ImportError;
use crate::params::{Flat, Refused, Scalar, join, list, value};

const SHAPE: &str = "write one mapping of parameters, `lr: 0.1`, with nested keys indented below their parent";
const TAG_FIX: &str = "write the value as plain YAML (a number, text, a list or a mapping), or remove the key; PyYAML tags Python objects: dump plain values (e.g. vars(args))";

/// The parameters of a YAML file.
pub(crate) fn params(path: &Path, text: &str) -> Result<Params, ImportError> {
    let mut reader = Reader { path, events: Parser::new_from_str(text), out: Flat::default() };
    reader.stream()?;
    Ok(reader.out.into_params())
}

struct Reader<'a> {
    path: &'a Path,
    events: Parser<'a, StrInput<'a>>,
    out: Flat,
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A tag as it is usually written: `!!python/tuple`, `!local`.
fn show(tag: &Tag) -> String {
    match tag.handle.as_str() {
        _ if tag.is_yaml_core_schema() => format!("!!{}", tag.suffix),
        "!" => format!("!{}", tag.suffix),
        handle => format!("{handle}{}", tag.suffix),
    }
}

fn is_core(tag: &Tag, suffixes: &[&str]) -> bool {
    tag.is_yaml_core_schema() && suffixes.contains(&tag.suffix.as_str())
}

impl<'a> Reader<'a> {
    fn err(&self, line: usize, key: Option<&str>, problem: impl Into<String>, fix: impl Into<String>) -> ImportError {
        ImportError {
            file: self.path.to_path_buf(),
            line: Some(line as u64),
            field: key.map(str::to_string),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn refused(&self, line: usize, key: &str, r: Refused) -> ImportError {
        self.err(line, Some(key).filter(|k| !k.is_empty()), r.problem, r.fix)
    }

    /// The next event and its line.
    fn next(&mut self) -> Result<(Event<'a>, usize), ImportError> {
        match self.events.next_event() {
            None => Ok((Event::StreamEnd, 0)),
            Some(Ok((event, span))) => Ok((event, span.start.line())),
            Some(Err(e)) => Err(self.err(e.marker().line(), None, format!("not valid YAML: {}", e.info()), SHAPE)),
        }
    }

    fn stream(&mut self) -> Result<(), ImportError> {
        let mut documents = 0;
        loop {
            let (event, line) = self.next()?;
            match event {
                Event::StreamEnd => return Ok(()),
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(self.err(
                            line,
                            None,
                            "more than one YAML document",
                            "keep one document: one mapping of parameters",
                        ));
                    }
                    let (root, line) = self.next()?;
                    match root {
                        Event::MappingStart(_, tag) => {
                            self.plain_collection(tag.as_deref(), "map", line, "")?;
                            self.mapping("")?;
                        }
                        Event::Scalar(text, ScalarStyle::Plain, _, None) if is_null(&text) => {}
                        _ => return Err(self.err(line, None, "must be a mapping of parameters", SHAPE)),
                    }
                }
                _ => {}
            }
        }
    }

    /// The entries of a mapping whose start was just read, under `prefix`.
    fn mapping(&mut self, prefix: &str) -> Result<(), ImportError> {
        loop {
            let (event, line) = self.next()?;
            let key = match event {
                Event::MappingEnd => return Ok(()),
                Event::Scalar(text, ..) => text,
                Event::Alias(_) => return Err(self.alias(line, prefix)),
                _ => {
                    return Err(self.err(
                        line,
                        Some(prefix).filter(|p| !p.is_empty()),
                        "a key must be a name, not a list or a mapping",
                        "write `name: value`",
                    ));
                }
            };
            let name = join(prefix, &key).map_err(|r| self.refused(line, prefix, r))?;
            self.value(&name, line)?;
        }
    }

    /// The value of the key `name` (on `key_line`).
    fn value(&mut self, name: &str, key_line: usize) -> Result<(), ImportError> {
        let (event, line) = self.next()?;
        let typed = match event {
            Event::Scalar(text, style, _, tag) => self.scalar(&text, style, tag.as_deref(), line, name)?,
            Event::MappingStart(_, tag) => {
                self.plain_collection(tag.as_deref(), "map", line, name)?;
                return self.mapping(name);
            }
            Event::SequenceStart(_, tag) => {
                // PyYAML writes tuples (Adam's betas) as `!!python/tuple`: a list like any other.
                if !tag.as_deref().is_some_and(|t| is_core(t, &["python/tuple"])) {
                    self.plain_collection(tag.as_deref(), "seq", line, name)?;
                }
                let mut values = Vec::new();
                loop {
                    let (item, line) = self.next()?;
                    match item {
                        Event::SequenceEnd => break,
                        Event::Scalar(text, style, _, tag) => {
                            values.push(self.scalar(&text, style, tag.as_deref(), line, name)?)
                        }
                        Event::Alias(_) => return Err(self.alias(line, name)),
                        _ => {
                            return Err(self.err(
                                line,
                                Some(name),
                                "a list may hold only numbers, text, booleans and nulls, found a list or a mapping",
                                format!("flatten it into one key per value (`{name}.0: ...`, `{name}.1: ...`), or leave it out"),
                            ));
                        }
                    }
                }
                Some(list(&values))
            }
            Event::Alias(_) => return Err(self.alias(line, name)),
            _ => return Err(self.err(line, Some(name), "expected a value", SHAPE)),
        };
        self.out.insert(name, typed).map_err(|r| self.refused(key_line, name, r))
    }

    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        line: usize,
        name: &str,
    ) -> Result<Option<ParamValue>, ImportError> {
        let scalar = match tag {
            None if style != ScalarStyle::Plain => Scalar::Quoted(text),
            Some(t) if is_core(t, &["str"]) => Scalar::Quoted(text),
            None => Scalar::Plain(text),
            Some(t) if is_core(t, &["int", "float", "bool", "null"]) => Scalar::Plain(text),
            Some(t) => return Err(self.err(line, Some(name), format!("the YAML tag {} is not supported", show(t)), TAG_FIX)),
        };
        let scalar = match scalar {
            Scalar::Plain(t) if is_null(t) => Scalar::Null,
            other => other,
        };
        value(scalar).map_err(|r| self.refused(line, name, r))
    }

    /// Refuses a tag on a mapping or list other than the core schema's own (`!!map`, `!!seq`).
    fn plain_collection(&self, tag: Option<&Tag>, core: &str, line: usize, name: &str) -> Result<(), ImportError> {
        match tag {
            Some(t) if !is_core(t, &[core]) => Err(self.err(
                line,
                Some(name).filter(|n| !n.is_empty()),
                format!("the YAML tag {} is not supported", show(t)),
                TAG_FIX,
            )),
            _ => Ok(()),
        }
    }

    fn alias(&self, line: usize, name: &str) -> ImportError {
        self.err(
            line,
            Some(name).filter(|n| !n.is_empty()),
            "an alias (*name) is not supported",
            "write the value out where the alias is (PyYAML writes aliases for a value used twice)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Params, ImportError> {
        params(Path::new("hparams.yaml"), text)
    }

    #[test]
    fn scalars_comments_and_quotes() {
        let text = "---\n# c\nlr: 0.1  # comment\nname: 'it''s # not a comment'\nq: \"a\\\" #b\"\nn: 3\nb: True\nnone: ~\nempty:\nplain: cosine\ntext: '0.1'\nblock: |\n  two\n  lines\n";
        let got = read(text).unwrap();
        assert_eq!(got.get("lr"), Some(&ParamValue::Float(0.1)));
        assert_eq!(got.get("name"), Some(&ParamValue::Str("it's # not a comment".into())));
        assert_eq!(got.get("q"), Some(&ParamValue::Str("a\" #b".into())));
        assert_eq!(got.get("n"), Some(&ParamValue::Int(3)));
        assert_eq!(got.get("b"), Some(&ParamValue::Bool(true)));
        assert_eq!((got.get("none"), got.get("empty")), (None, None));
        assert_eq!(got.get("plain"), Some(&ParamValue::Str("cosine".into())));
        assert_eq!(got.get("text"), Some(&ParamValue::Str("0.1".into())), "quoted: text");
        assert_eq!(got.get("block"), Some(&ParamValue::Str("two\nlines\n".into())));
        assert!(read("").unwrap().is_empty());
        assert!(read("# only a comment\n").unwrap().is_empty());
    }

    #[test]
    fn nested_mappings_flatten_and_lists_become_text() {
        let text = "model:\n  layers: 4\n  act: relu\noptimizer: {lr: 0.1, momentum: 0.9}\nbetas: !!python/tuple\n- 0.9\n- 0.999\nmilestones: [30, 60]\nn: !!str 5\n";
        let got = read(text).unwrap();
        assert_eq!(
            got.0,
            [
                ("model.layers".to_string(), ParamValue::Int(4)),
                ("model.act".to_string(), ParamValue::Str("relu".into())),
                ("optimizer.lr".to_string(), ParamValue::Float(0.1)),
                ("optimizer.momentum".to_string(), ParamValue::Float(0.9)),
                ("betas".to_string(), ParamValue::Str("[0.9,0.999]".into())),
                ("milestones".to_string(), ParamValue::Str("[30,60]".into())),
                ("n".to_string(), ParamValue::Str("5".into())),
            ]
        );
    }

    #[test]
    fn what_is_refused_names_the_line_and_key() {
        let check = |text: &str, line: u64, key: Option<&str>, words: &str| {
            let e = read(text).unwrap_err();
            assert_eq!((e.line, e.field.as_deref()), (Some(line), key), "{e}");
            assert!(e.to_string().contains(words), "{e}");
            assert!(!e.fix.is_empty(), "{e}");
        };
        check("lr: 0.1\nopt:\n  lr: 0.2\n  lr: 0.3\n", 4, Some("opt.lr"), "duplicate key");
        check("opt.lr: 0.1\nopt:\n  lr: 0.2\n", 3, Some("opt.lr"), "duplicate key");
        check("layers:\n  - units: 64\n", 2, Some("layers"), "a list may hold only");
        check("args: !!python/object:argparse.Namespace\n  lr: 0.1\n", 1, Some("args"), "python/object");
        check("a: &x 1\nb: *x\n", 2, Some("b"), "alias");
        check("lr: .inf\n", 1, Some("lr"), "not finite");
        check("- 1\n- 2\n", 1, None, "must be a mapping");
        check("lr 0.1\n", 1, None, "must be a mapping");
        check("a: 1\n---\nb: 2\n", 2, None, "more than one YAML document");
        check("a: [1, 2\n", 2, None, "not valid YAML");
    }
}
