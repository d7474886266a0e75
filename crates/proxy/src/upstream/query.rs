//! Portcullis' own queries on upstream connections no client is using yet
//! (right after login) or at all (catalog loading, dry runs): text results.

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
    exchange(stream, leftover, &out).await.map(|e| e.sets)
}

/// What the server answered to one request.
#[derive(Debug, Default)]
pub struct Exchanged {
    /// Each statement's (or Execute's) rows.
    pub sets: Vec<Vec<Row>>,
    /// Every ParameterDescription's types, one after another.
    pub parameter_types: Vec<u32>,
}

impl Exchanged {
    /// The first row of the first result.
    pub fn first_row(&self) -> Option<&Row> {
        self.sets.first().and_then(|s| s.first())
    }

    /// The first column of [`Exchanged::first_row`], if not NULL.
    pub fn first_value(&self) -> Option<&str> {
        self.first_row()?.first()?.as_deref()
    }
}

/// Sends `request` (one Query, or extended-protocol messages ending with
/// one Sync) and reads the answers up to its ReadyForQuery. The first error
/// the server reports is the result.
pub async fn exchange(
    stream: &mut UpstreamStream,
    leftover: &mut BytesMut,
    request: &[u8],
) -> Result<Exchanged, UpstreamError> {
    stream.write_all(request).await?;
    stream.flush().await?;

    let mut reader = Reader {
        buf: std::mem::take(leftover),
        splitter: Splitter::new(Limits::backend()),
    };
    let mut answer = Exchanged::default();
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
            be::COMMAND_COMPLETE | be::EMPTY_QUERY_RESPONSE | be::PORTAL_SUSPENDED => {
                answer.sets.push(std::mem::take(&mut current));
            }
            be::PARAMETER_DESCRIPTION => {
                answer.parameter_types.extend(
                    body.get(2..)
                        .unwrap_or_default()
                        .chunks_exact(4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                );
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
        None => Ok(answer),
    }
}
