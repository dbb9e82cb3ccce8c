//! Expected failures: `conformance/xfail/<backend>.toml`, each entry a case glob and a reason.
//!
//! ```toml
//! [[xfail]]
//! case = "ops.exp.f16.*.wide"
//! reason = "the driver's half exp flushes results above 2^15 to infinity"
//! ```

use serde::Deserialize;

use crate::cases::glob_match;

/// One expected failure.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct XfailEntry {
    /// A glob over case ids.
    pub case: String,
    /// Why it fails; required.
    pub reason: String,
}

#[derive(Deserialize)]
struct XfailFile {
    #[serde(default)]
    xfail: Vec<XfailEntry>,
}

/// A list of expected failures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xfails {
    entries: Vec<XfailEntry>,
}

impl Xfails {
    /// Parses a manifest; an entry without a reason is an error.
    pub fn parse(text: &str, origin: &str) -> Result<Xfails, String> {
        let file: XfailFile = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        for e in &file.xfail {
            if e.reason.trim().is_empty() {
                return Err(format!("{origin}: the entry for `{}` has an empty reason; every expected failure needs one", e.case));
            }
        }
        Ok(Xfails {
            entries: file.xfail,
        })
    }

    /// The manifest compiled in for a built-in backend (empty for others).
    pub fn builtin(backend: &str) -> Xfails {
        let text = match backend {
            "cpu" => include_str!("../xfail/cpu.toml"),
            _ => "",
        };
        Xfails::parse(text, &format!("conformance/xfail/{backend}.toml")).unwrap_or_default()
    }

    /// Adds the entries of another list.
    pub fn extend(&mut self, other: Xfails) {
        self.entries.extend(other.entries);
    }

    /// The reason a case is expected to fail, if it is listed.
    pub fn reason(&self, case_id: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| glob_match(&e.case, case_id))
            .map(|e| e.reason.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let x = Xfails::parse(
            "[[xfail]]\ncase = \"ops.exp.f16.*\"\nreason = \"flushes\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(x.reason("ops.exp.f16.p97.wide"), Some("flushes"));
        assert_eq!(x.reason("ops.exp.f32.p97.wide"), None);
        assert!(
            Xfails::parse("[[xfail]]\ncase = \"x\"\nreason = \" \"\n", "t")
                .unwrap_err()
                .contains("empty reason")
        );
        assert!(Xfails::parse("[[xfail]]\ncase = \"x\"\n", "t").is_err());
        assert!(Xfails::builtin("cpu").entries.is_empty());
    }
}
