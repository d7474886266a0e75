//! Log output. Filter with PORTCULLIS_LOG, or the conventional RUST_LOG
//! when PORTCULLIS_LOG is not set (default `info`), e.g.
//! `PORTCULLIS_LOG=portcullis_proxy=debug`. Logs never carry passwords or
//! statement text: the proxy logs identities, targets, codes and reasons.

use portcullis_config::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("PORTCULLIS_LOG")
        .or_else(|_| EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}
