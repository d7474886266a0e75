//! Log output. Filter with PORTCULLIS_LOG, or the conventional RUST_LOG
//! when PORTCULLIS_LOG is not set (default `info`), e.g.
//! `PORTCULLIS_LOG=portcullis_proxy=debug`. Logs never carry passwords or
//! statement text: the proxy logs identities, targets, codes and reasons.

use portcullis_config::LogFormat;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub fn init(format: LogFormat) {
    let directives = std::env::var("PORTCULLIS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Human => fmt.boxed(),
    };
    let (targets, env) = filter(&directives);
    let _ = Registry::default()
        .with(targets)
        .with(env)
        .with(fmt)
        .try_init();
}

/// Plain `target=level` directives become a [`Targets`] filter, which
/// decides once per call site. Only directives that name spans or fields
/// need an [`EnvFilter`], which also tracks every span entered (each
/// session's span is entered on every poll of the session).
fn filter(directives: &str) -> (Option<Targets>, Option<EnvFilter>) {
    let directives = directives.trim();
    if directives.is_empty() {
        return (
            Some(Targets::new().with_default(tracing::Level::INFO)),
            None,
        );
    }
    match directives.parse::<Targets>() {
        Ok(t) if !directives.contains('[') && !directives.contains('{') => (Some(t), None),
        _ => {
            let env = EnvFilter::try_new(directives).unwrap_or_else(|e| {
                eprintln!("warning: ignoring log filter {directives:?}: {e}");
                EnvFilter::new("info")
            });
            (None, Some(env))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn with_filter(directives: &str, f: impl FnOnce() -> bool) -> bool {
        let (targets, env) = filter(directives);
        let sub = Registry::default()
            .with(targets)
            .with(env)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
        tracing::subscriber::with_default(sub, f)
    }

    #[test]
    fn default_is_info() {
        assert!(with_filter(
            "",
            || tracing::enabled!(target: "portcullis_proxy", Level::INFO)
        ));
        assert!(!with_filter(
            "",
            || tracing::enabled!(target: "portcullis_proxy", Level::DEBUG)
        ));
    }

    #[test]
    fn target_directives_are_followed() {
        let d = "warn,portcullis_proxy=debug";
        assert!(with_filter(
            d,
            || tracing::enabled!(target: "portcullis_proxy::session", Level::DEBUG)
        ));
        assert!(!with_filter(
            d,
            || tracing::enabled!(target: "portcullis_guard", Level::INFO)
        ));
        assert!(with_filter(
            d,
            || tracing::enabled!(target: "portcullis_guard", Level::WARN)
        ));
    }

    #[test]
    fn span_directives_still_work() {
        let d = "info,[session{user=alice}]=debug";
        assert!(with_filter(
            d,
            || tracing::enabled!(target: "portcullis_proxy", Level::INFO)
        ));
    }
}
