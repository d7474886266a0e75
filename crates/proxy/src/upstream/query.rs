//! Portcullis' own queries on upstream connections no client is using yet
//! (right after login) or at all (catalog loading): simple Query, text
//! results.

use bytes::BytesMut;
use portcullis_wire::framing::{Limits, Splitter};
use portcullis_wire::tags::backend as be;
use portcullis_wire::{decode, encode};
use tokio::io::AsyncWriteExt;

use super::login::Reader;
use super::UpstreamError;
use crate::stream::UpstreamStream;

/// One row, text columns, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// Runs `sql` (one or more statements) and returns each statement's rows.
/// `leftover` holds bytes already read from the connection, and on return
/// whatever was read past the final ReadyForQuery.
pub async fn simple_query(
    stream: &mut UpstreamStream,
    leftover: &mut BytesMut,
    sql: &str,
) -> Result<Vec<Vec<Row>>, UpstreamError> {
    let mut out = BytesMut::new();
    encode::query(&mut out, sql);
    stream.write_all(&out).await?;
    stream.flush().await?;

    let mut reader = Reader {
        buf: std::mem::take(leftover),
        splitter: Splitter::new(Limits::backend()),
    };
    let mut sets: Vec<Vec<Row>> = Vec::new();
    let mut current: Vec<Row> = Vec::new();
    let mut failure = None;
    loop {
        let msg = reader.message(stream).await?;
        let body = decode::body(&msg);
        match msg[0] {
            be::DATA_ROW => {
                let row = decode::data_row(body)?
                    .into_iter()
                    .map(|c| c.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect();
                current.push(row);
            }
            be::COMMAND_COMPLETE | be::EMPTY_QUERY_RESPONSE => {
                sets.push(std::mem::take(&mut current));
            }
            be::ERROR_RESPONSE => {
                let f = decode::report_fields(body)?;
                failure.get_or_insert(UpstreamError::Query {
                    code: f.code.unwrap_or("XX000").to_owned(),
                    message: f.message.unwrap_or("").to_owned(),
                });
            }
            be::READY_FOR_QUERY => break,
            // RowDescription, notices, ParameterStatus: not needed.
            _ => {}
        }
    }
    *leftover = reader.buf;
    match failure {
        Some(e) => Err(e),
        None => Ok(sets),
    }
}
