//! The client pump's state machine, without sockets.
//!
//! The pump is always in one [`Mode`]. Relaying, it judges each message
//! and sends it (or what replaces it) on. After the proxy made an
//! extended-protocol message fail in the server's place, the server skips
//! everything up to Sync, and so does the pump: it drops those messages
//! unjudged (a message that never runs must not change the session model,
//! draw on a budget or be held for an approval nobody needs). Holding, it
//! has stopped at one message until a wait is over; nothing after it is
//! judged, and the client is still read, up to a bound, so that a
//! Terminate or a disconnect is seen at once.
//!
//! [`route`] says what the mode does with the next message, and
//! [`hold_step`] what each event does to a statement held for approval.
//! A message the proxy fails in the extended protocol puts the pump in
//! `DiscardingToSync`; a hold ends in `Relaying`. The async shell in
//! `client_pump.rs` and `holding.rs` carries the steps out.

use portcullis_wire::tags::frontend as fe;

/// What the client pump is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Relaying,
    /// The server skips everything up to the next Sync.
    DiscardingToSync,
    /// Stopped at a message until the wait is over.
    Holding(Hold),
}

/// What a holding pump waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Every earlier request answered: a statement whose returned rows
    /// are counted goes out alone, and an approval is asked for in the
    /// session state the server is in.
    Quiet,
    /// Whether the server is in copy mode (a Sync after a request that may
    /// have started COPY FROM STDIN).
    CopyFate,
    /// The end of the counted statement just sent.
    Counted,
    /// The message's audit record being committed.
    Audit,
    /// A human's decision on the message.
    Approval,
}

/// What to do with the next client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Judge it.
    Judge,
    /// Drop it unjudged: the server would skip it.
    Drop,
    /// Forward it unjudged (the Sync that ends a discard).
    EndDiscard,
}

/// What the mode does with a message tagged `tag`. A pump that is holding
/// routes nothing: it reads no message until the wait is over.
pub(crate) fn route(mode: Mode, tag: u8) -> Route {
    match mode {
        Mode::DiscardingToSync if tag == fe::SYNC => Route::EndDiscard,
        // Terminate ends the session whatever the server is skipping.
        Mode::DiscardingToSync if tag == fe::TERMINATE => Route::Judge,
        Mode::DiscardingToSync => Route::Drop,
        Mode::Relaying | Mode::Holding(_) => Route::Judge,
    }
}

/// Something that happens to a statement held for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldEvent {
    /// The client sent more: `read` bytes are buffered past the held
    /// message, and a Terminate is among them when `terminate`.
    Client { read: usize, terminate: bool },
    /// The client closed its connection.
    ClientGone,
    /// A CancelRequest with the session's key.
    Cancelled,
    /// The request was decided (or closed) in the store.
    Decided(portcullis_approvals::State),
    /// The configured timeout passed.
    TimedOut,
}

/// What the pump does on a [`HoldEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldStep {
    /// Keep waiting; read from the client only when `read`.
    Wait { read: bool },
    /// Approved: judge the message again, approved, and go on.
    Release,
    /// It does not run: the client gets `Failure` in its place, and the
    /// request is withdrawn (or marked expired) if it is still pending.
    Fail(Failure),
    /// The session ends; the request is withdrawn.
    End(Ending),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Denied,
    Expired,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Terminated,
    ClientGone,
}

/// The step for `event`, reading ahead at most `bound` bytes; `reading`:
/// whether the pump reads from the client now (an event that says nothing
/// of the client leaves that as it is).
pub(crate) fn hold_step(event: HoldEvent, bound: usize, reading: bool) -> HoldStep {
    use portcullis_approvals::State;
    match event {
        HoldEvent::Client {
            terminate: true, ..
        } => HoldStep::End(Ending::Terminated),
        HoldEvent::Client { read, .. } => HoldStep::Wait { read: read < bound },
        HoldEvent::ClientGone => HoldStep::End(Ending::ClientGone),
        HoldEvent::Cancelled => HoldStep::Fail(Failure::Cancelled),
        HoldEvent::TimedOut => HoldStep::Fail(Failure::Expired),
        HoldEvent::Decided(State::Approved) => HoldStep::Release,
        HoldEvent::Decided(State::Denied) => HoldStep::Fail(Failure::Denied),
        HoldEvent::Decided(State::Expired) => HoldStep::Fail(Failure::Expired),
        // Withdrawn elsewhere (an administrator, a node that lost the
        // session's request): it does not run.
        HoldEvent::Decided(State::Withdrawn) => HoldStep::Fail(Failure::Cancelled),
        HoldEvent::Decided(State::Pending) => HoldStep::Wait { read: reading },
    }
}

/// Whether a Terminate is among the complete messages at the start of
/// `bytes` (messages read while a statement is held, not yet judged).
/// Stops at the first incomplete or malformed frame: the splitter refuses
/// those once the hold is over.
pub(crate) fn terminate_ahead(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 5 {
        let tag = bytes[0];
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        if len < 4 || bytes.len() < 1 + len {
            return false;
        }
        if tag == fe::TERMINATE {
            return true;
        }
        bytes = &bytes[1 + len..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_approvals::State;

    #[test]
    fn discarding_drops_everything_up_to_sync() {
        let m = Mode::DiscardingToSync;
        for tag in [
            fe::PARSE,
            fe::BIND,
            fe::EXECUTE,
            fe::DESCRIBE,
            fe::CLOSE,
            fe::FLUSH,
            fe::QUERY,
            fe::FUNCTION_CALL,
            fe::COPY_DATA,
            fe::COPY_DONE,
        ] {
            assert_eq!(route(m, tag), Route::Drop, "{}", tag as char);
        }
        assert_eq!(route(m, fe::TERMINATE), Route::Judge);
        assert_eq!(route(m, fe::SYNC), Route::EndDiscard);
        assert_eq!(route(Mode::Relaying, fe::SYNC), Route::Judge);
        assert_eq!(route(Mode::Relaying, fe::PARSE), Route::Judge);
    }

    #[test]
    fn what_each_event_does_to_a_held_statement() {
        let bound = 1024;
        let step = |e| hold_step(e, bound, true);
        assert_eq!(
            step(HoldEvent::Client {
                read: 10,
                terminate: false
            }),
            HoldStep::Wait { read: true }
        );
        assert_eq!(
            step(HoldEvent::Client {
                read: 1024,
                terminate: false
            }),
            HoldStep::Wait { read: false },
            "read-ahead is bounded"
        );
        assert_eq!(
            step(HoldEvent::Client {
                read: 5000,
                terminate: true
            }),
            HoldStep::End(Ending::Terminated)
        );
        assert_eq!(
            step(HoldEvent::ClientGone),
            HoldStep::End(Ending::ClientGone)
        );
        assert_eq!(
            step(HoldEvent::Cancelled),
            HoldStep::Fail(Failure::Cancelled)
        );
        assert_eq!(step(HoldEvent::TimedOut), HoldStep::Fail(Failure::Expired));
        assert_eq!(step(HoldEvent::Decided(State::Approved)), HoldStep::Release);
        assert_eq!(
            step(HoldEvent::Decided(State::Denied)),
            HoldStep::Fail(Failure::Denied)
        );
        assert_eq!(
            step(HoldEvent::Decided(State::Expired)),
            HoldStep::Fail(Failure::Expired)
        );
        assert_eq!(
            step(HoldEvent::Decided(State::Withdrawn)),
            HoldStep::Fail(Failure::Cancelled)
        );
        // Still pending (a wake-up, a poll): reading stays as it was, so
        // the read-ahead bound holds.
        assert_eq!(
            hold_step(HoldEvent::Decided(State::Pending), bound, false),
            HoldStep::Wait { read: false }
        );
    }

    #[test]
    fn terminate_is_seen_among_whole_messages_only() {
        let mut b = Vec::new();
        b.extend_from_slice(&[b'Q', 0, 0, 0, 6, b'x', 0]);
        assert!(!terminate_ahead(&b));
        b.extend_from_slice(&[b'X', 0, 0, 0, 4]);
        assert!(terminate_ahead(&b));
        // Cut short, or after a malformed length: not seen.
        assert!(!terminate_ahead(&b[..b.len() - 1]));
        assert!(!terminate_ahead(&[b'Q', 0, 0, 0, 2, b'X', 0, 0, 0, 4]));
        assert!(!terminate_ahead(&[]));
    }
}
