//! [`QueryStream`]: the body of a `/query` answer, fed by the blocking query task.
//!
//! Chunks arrive through a bounded channel (backpressure: the query waits while the client is
//! slow). When the channel closes, the task's recorded outcome decides how the stream ends: cleanly
//! after a complete answer, or, after an error, with one final error line (the JSON error document)
//! followed by a stream error, so the HTTP layer aborts the chunked response and the client sees a
//! broken body rather than a clean-looking truncated one. Dropping the stream cancels the query.
//! Not here: running the query ([`crate::Reader::query`]).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;
use trough_sqlite::{CancelToken, QueryStats, RowFormat};
use trough_types::wire::error_line;

use crate::error::Error;

/// How the blocking task ended; set before its channel sender is dropped.
pub(crate) type Outcome = Arc<OnceLock<Result<QueryStats, trough_types::Error>>>;

/// Cancels the query when dropped (the client went away, or the request future was dropped).
pub(crate) struct CancelOnDrop(pub(crate) CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

enum State {
    Streaming,
    /// The error line was handed over; the stream error comes next (`true`: once the body let
    /// the server flush the line).
    Failing(trough_types::Error, bool),
    Done,
}

/// A query's answer as a stream of byte chunks (`Stream<Item = Result<Bytes, Error>>`).
///
/// Convert it into an HTTP body with `axum::body::Body::from(stream)` or [`Self::into_body`].
pub struct QueryStream {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    outcome: Outcome,
    state: State,
    format: RowFormat,
    _cancel: CancelOnDrop,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl QueryStream {
    pub(crate) fn new(
        first: Option<Bytes>,
        rx: mpsc::Receiver<Bytes>,
        outcome: Outcome,
        cancel: CancelOnDrop,
        format: RowFormat,
    ) -> Self {
        Self {
            first,
            rx,
            outcome,
            state: State::Streaming,
            format,
            _cancel: cancel,
        }
    }

    /// The `Content-Type` of this answer.
    pub fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    /// The answer as an HTTP body.
    pub fn into_body(self) -> axum::body::Body {
        axum::body::Body::from_stream(self)
    }

    /// The final error line for `e`, on a line of its own.
    fn error_chunk(&self, e: &trough_types::Error) -> Bytes {
        let line = error_line(e.kind(), e.code(), e.message());
        Bytes::from(match self.format {
            // Row lines already end with '\n'.
            RowFormat::Ndjson => format!("{line}\n"),
            RowFormat::JsonArray | RowFormat::Columnar => format!("\n{line}\n"),
        })
    }
}

impl Stream for QueryStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        match std::mem::replace(&mut this.state, State::Done) {
            State::Done => Poll::Ready(None),
            // Yield once after the error line, so the HTTP server flushes it to the client
            // before the error aborts the connection (hyper drops unflushed output on a body
            // error); then end with the error.
            State::Failing(e, false) => {
                this.state = State::Failing(e, true);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            State::Failing(e, true) => Poll::Ready(Some(Err(Error::Core(e)))),
            State::Streaming => match this.rx.poll_recv(cx) {
                Poll::Pending => {
                    this.state = State::Streaming;
                    Poll::Pending
                }
                Poll::Ready(Some(chunk)) => {
                    this.state = State::Streaming;
                    Poll::Ready(Some(Ok(chunk)))
                }
                Poll::Ready(None) => {
                    let error = match this.outcome.get() {
                        Some(Ok(_)) => return Poll::Ready(None),
                        Some(Err(e)) => e.clone(),
                        None => trough_types::Error::internal("the query task ended unexpectedly"),
                    };
                    let chunk = this.error_chunk(&error);
                    this.state = State::Failing(error, false);
                    Poll::Ready(Some(Ok(chunk)))
                }
            },
        }
    }
}

impl From<QueryStream> for axum::body::Body {
    fn from(s: QueryStream) -> Self {
        s.into_body()
    }
}
