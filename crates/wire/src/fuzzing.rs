//! One entry point that runs every decoder over untrusted bytes, shared by
//! the cargo-fuzz target (`fuzz/`) and the randomized test below, so the
//! property "no input panics, every accepted length is consistent" is
//! checked on every `cargo test` too, not only by whoever runs the fuzzer.

use crate::framing::{Limits, Next, Splitter};
use crate::{bind_formats, decode, startup};

/// Decodes `data` every way the proxy would. Panics only on a bug.
pub fn exercise(data: &[u8]) {
    let (control, data) = match data.split_first() {
        Some((c, d)) => (*c, d),
        None => return,
    };
    let _ = startup::packet_len(data);
    let _ = startup::parse(data);
    for limits in [Limits::frontend(1 << 16), Limits::backend()] {
        split_all(limits, data, usize::from(control).max(1));
    }
    let _ = decode::auth_request(data);
    let _ = decode::sasl_initial_response(data);
    let _ = decode::password(data);
    let _ = decode::parameter_status(data);
    let _ = decode::backend_key_data(data);
    let _ = decode::ready_for_query(data);
    let _ = decode::function_call_oid(data);
    let _ = decode::negotiate_protocol_version(data);
    let _ = decode::report_fields(data);
    let _ = decode::query(data);
    let _ = decode::command_complete(data);
    let _ = decode::parse(data);
    let _ = decode::bind_names(data);
    if let Ok(values) = decode::bind_values(data) {
        // Every value came from the body.
        let total: usize = values.iter().flatten().map(|v| v.len()).sum();
        assert!(total + values.len() * 4 <= data.len());
    }
    let _ = decode::close(data);
    let _ = decode::data_row(data);
    if let Ok((_, codes)) = decode::copy_response(data) {
        assert_eq!(codes.len() * 2 + 3, data.len());
    }
    if let Ok(fields) = decode::row_description(data) {
        // Every field came from the body, whole.
        assert!(fields.len() * 19 <= data.len());
    }
    bind_in_pieces(data, usize::from(control).max(1));
}

/// Reads `data` as a Bind body whole and in pieces of `chunk` bytes: both
/// readings must agree.
fn bind_in_pieces(data: &[u8], chunk: usize) {
    let whole = bind_formats::result_formats(data);
    let mut r = bind_formats::BindFormats::new();
    let mut fed = Ok(());
    for piece in data.chunks(chunk) {
        fed = r.feed(piece);
        if fed.is_err() {
            break;
        }
    }
    let pieces = fed.and_then(|()| r.finish());
    assert_eq!(whole.ok(), pieces.ok(), "a Bind read whole and in pieces");
}

/// Feeds `data` to a splitter in reads of `chunk` bytes, consuming exactly
/// what it hands over, and checks the pieces add up.
fn split_all(limits: Limits, data: &[u8], chunk: usize) {
    let mut s = Splitter::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    loop {
        match s.next(&buf) {
            Err(_) => return,
            Ok(Next::NeedMore { hint }) => {
                assert!(hint == 0 || hint > buf.len() || s.mid_message());
                if fed == data.len() {
                    return;
                }
                let end = (fed + chunk).min(data.len());
                buf.extend_from_slice(&data[fed..end]);
                fed = end;
            }
            Ok(Next::Whole { len, .. }) => {
                assert!(len >= 5 && len <= buf.len());
                buf.drain(..len);
                consumed += len;
            }
            Ok(Next::StreamHead { len, total, .. }) => {
                assert!(len <= buf.len() && len < total);
                buf.drain(..len);
                consumed += len;
            }
            Ok(Next::StreamBody { len, .. }) => {
                assert!(len > 0 && len <= buf.len());
                buf.drain(..len);
                consumed += len;
            }
        }
        assert!(consumed <= fed);
    }
}

#[cfg(test)]
mod tests {
    /// A cheap stand-in for the fuzzer: structured and random inputs.
    #[test]
    fn random_inputs_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: [&[u8]; 4] = [
            b"\x05Q\x00\x00\x00\x0dselect 1\x00",
            b"\x03D\x00\x01\x00\x10\x00\x00\x00\x08abcdefghij",
            b"\x01\x00\x00\x00\x08\x04\xd2\x16\x2f",
            b"\x07R\x00\x00\x00\x0c\x00\x00\x00\x0aSCRAM\x00\x00",
        ];
        for seed in seeds {
            super::exercise(seed);
        }
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Plausible headers reach deeper code paths.
            if len > 6 && next() % 2 == 0 {
                v[1] = b"QPBDEHSXdcfpZTDCEN"[(next() % 18) as usize];
                v[2] = 0;
                v[3] = 0;
                v[4] = 0;
            }
            super::exercise(&v);
        }
    }
}
