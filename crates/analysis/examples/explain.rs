//! Prints the analysis of each argument as JSON:
//! `cargo run -p portcullis-analysis --example explain -- "SQL"`.
fn main() {
    for sql in std::env::args().skip(1) {
        match portcullis_analysis::analyze(&sql) {
            Ok(analysis) => match serde_json::to_string_pretty(&analysis) {
                Ok(json) => println!("{json}"),
                Err(e) => println!("cannot serialise: {e}"),
            },
            Err(e) => println!("error: {e}"),
        }
    }
}
