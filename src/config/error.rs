//! Configuration errors: every problem of a file, each with its line and field.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line of the offending value (or of its table when the value is absent).
    pub line: usize,
    /// Dotted path of the field, e.g. `agents[1].password`; empty for a TOML syntax error.
    pub field: String,
    /// What is wrong, for an operator.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}: {}: {}", self.line, self.field, self.message)
        }
    }
}

/// Every problem found in one configuration file, in line order (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// One line per error, each `PREFIX:LINE: field: message` (the `check-config` format).
    pub fn render_with_prefix(&self, prefix: &str) -> String {
        let mut out = String::new();
        for e in &self.errors {
            out.push_str(prefix);
            out.push(':');
            out.push_str(&e.line.to_string());
            out.push_str(": ");
            if !e.field.is_empty() {
                out.push_str(&e.field);
                out.push_str(": ");
            }
            out.push_str(&e.message);
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line: `line N: field: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Why [`super::Config::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Displays as one `FILE:LINE: field: message` line per error.
    #[error("{}", errors.render_with_prefix(&path.display().to_string()).trim_end())]
    Invalid { path: PathBuf, errors: ConfigErrors },
}

/// A non-fatal observation about a valid configuration (printed by `check-config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
