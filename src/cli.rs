//! Command line (DESIGN §4): `handover run [--config FILE] [--listen SPEC]... [--log-level
//! LEVEL]`, `handover check-config FILE`, `--version`, `--help`.
//!
//! Parsing is clap derive; everything after parsing is a plain function so it can be tested
//! without spawning the binary. `main` calls [`Cli::parse`], then [`RunArgs::load_config`] and
//! [`RunArgs::log_filter`] for `run`, or [`check_config`] for `check-config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigLoadError, ListenSpec, ListenSpecError, Protocol};

/// A SIP back-to-back user agent for contact centres.
#[derive(Debug, Parser)]
#[command(name = "handover", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (without --config: the embedded default, 127.0.0.1:5060 UDP+TCP).
    Run(RunArgs),
    /// Validate a configuration file; prints every error as FILE:LINE: field: message.
    CheckConfig(CheckConfigArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Configuration file (TOML). Default: the embedded config/handover.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SIP listen socket: udp:IP:PORT, tcp:IP:PORT, or a bare IP:PORT for both (IPv6 in
    /// brackets, e.g. `[::1]:5060`); repeatable. Replaces the config's `[sip]` listen list.
    #[arg(long = "listen", value_name = "SPEC")]
    pub listen: Vec<ListenArg>,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `handover=debug`).
    /// Default: $RUST_LOG, else `info`.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// Configuration file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// One `--listen` value: a [`ListenSpec`], or a bare `IP:PORT` meaning UDP and TCP on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenArg(pub Vec<ListenSpec>);

impl FromStr for ListenArg {
    type Err = ListenSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ListenArg(vec![
                ListenSpec {
                    protocol: Protocol::Udp,
                    addr,
                },
                ListenSpec {
                    protocol: Protocol::Tcp,
                    addr,
                },
            ]));
        }
        s.parse::<ListenSpec>().map(|spec| ListenArg(vec![spec]))
    }
}

impl RunArgs {
    /// Every `--listen` socket in order, duplicates removed (empty: use the config's list).
    pub fn listen_specs(&self) -> Vec<ListenSpec> {
        let mut out: Vec<ListenSpec> = Vec::new();
        for spec in self.listen.iter().flat_map(|a| a.0.iter()) {
            if !out.contains(spec) {
                out.push(*spec);
            }
        }
        out
    }

    /// The configuration to run with: `--config` or the embedded default, with `--listen`
    /// (when given) replacing the listen list.
    pub fn load_config(&self) -> Result<Config, ConfigLoadError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::embedded_default(),
        };
        let listen = self.listen_specs();
        if !listen.is_empty() {
            config.sip.listen = listen;
        }
        Ok(config)
    }

    /// The tracing filter: `--log-level`, else `$RUST_LOG`, else `info`.
    pub fn log_filter(&self) -> String {
        log_filter_from(
            self.log_level.as_deref(),
            std::env::var("RUST_LOG").ok().as_deref(),
        )
    }
}

/// [`RunArgs::log_filter`] without the environment read.
pub fn log_filter_from(arg: Option<&str>, rust_log: Option<&str>) -> String {
    [arg, rust_log]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("info")
        .to_string()
}

/// `handover check-config FILE`: `(0, "ok: <summary>\n")` (plus `FILE: warning: ...` lines),
/// or `(1, "FILE:LINE: field: message\n"...)` with every error.
pub fn check_config(path: &Path) -> (u8, String) {
    match Config::load(path) {
        Ok(config) => {
            let mut out = String::new();
            for w in config.warnings() {
                out.push_str(&format!("{}: warning: {w}\n", path.display()));
            }
            out.push_str(&format!("ok: {}\n", summary(&config)));
            (0, out)
        }
        Err(ConfigLoadError::Invalid { path, errors }) => {
            (1, errors.render_with_prefix(&path.display().to_string()))
        }
        Err(e @ ConfigLoadError::Io { .. }) => (1, format!("{e}\n")),
    }
}

/// One line describing what a configuration serves.
pub fn summary(c: &Config) -> String {
    let listen: Vec<String> = c.sip.listen.iter().map(ToString::to_string).collect();
    format!(
        "domain {}, listen {}, http {}, {} trunk(s), {} agent(s), {} queue(s), {} IVR(s), {} external number(s), CDRs {}",
        c.sip.domain,
        listen.join(" "),
        c.http.listen,
        c.trunks.len(),
        c.agents.len(),
        c.queues.len(),
        c.ivr.len(),
        c.external_numbers.len(),
        c.cdr
            .path
            .as_ref()
            .map_or_else(|| "off".to_string(), |p| p.display().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_with_repeated_listen() {
        let cli = Cli::try_parse_from([
            "handover",
            "run",
            "--listen",
            "udp:127.0.0.1:5070",
            "--listen",
            "tcp:[::1]:5070",
            "--log-level",
            "debug",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(args.config, None);
        let specs = args.listen_specs();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].to_string(), "tcp:[::1]:5070");
        assert_eq!(args.log_filter(), "debug");
        let config = args.load_config().unwrap();
        assert_eq!(config.sip.listen, specs);
        // The rest comes from the embedded default.
        assert_eq!(config.sip.domain, "handover.local");
    }

    #[test]
    fn bad_listen_is_a_usage_error() {
        let err = Cli::try_parse_from(["handover", "run", "--listen", "sctp:127.0.0.1:5060"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn check_config_takes_a_file() {
        let cli = Cli::try_parse_from(["handover", "check-config", "x.toml"]).unwrap();
        let Command::CheckConfig(args) = cli.command else {
            panic!("expected check-config")
        };
        assert_eq!(args.file, PathBuf::from("x.toml"));
        assert!(Cli::try_parse_from(["handover", "check-config"]).is_err());
    }

    #[test]
    fn version_and_help() {
        let v = Cli::try_parse_from(["handover", "--version"]).unwrap_err();
        assert_eq!(v.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(v.to_string().contains(env!("CARGO_PKG_VERSION")));
        let h = Cli::try_parse_from(["handover", "--help"]).unwrap_err();
        assert_eq!(h.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(h.to_string().contains("check-config"));
    }

    #[test]
    fn log_filter_precedence() {
        assert_eq!(log_filter_from(Some("trace"), Some("warn")), "trace");
        assert_eq!(log_filter_from(None, Some("warn")), "warn");
        assert_eq!(log_filter_from(Some(""), Some("warn")), "warn");
        assert_eq!(log_filter_from(None, Some("  ")), "info");
        assert_eq!(log_filter_from(None, None), "info");
    }

    #[test]
    fn bare_listen_address_means_udp_and_tcp() {
        let cli = Cli::try_parse_from([
            "handover",
            "run",
            "--listen",
            "[::1]:5062",
            "--listen",
            "udp:[::1]:5062",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        let specs: Vec<String> = args
            .listen_specs()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(specs, ["udp:[::1]:5062", "tcp:[::1]:5062"]);
    }
}
