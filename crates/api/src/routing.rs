//! Where a segment request is answered: here, or on another node. One pure decision for every
//! handler that touches one segment (query, execute, Trough's wire format, promote); the
//! handlers only gather its inputs and carry it out.
//!
//! Not here: which node a forwarded request goes to (`trough_cluster::read_targets`,
//! `ClusterView::writer_of`) or how it is sent (`trough_cluster::forward`, `crate::replicas`).

/// What the request does to the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A read (`/query`).
    Read,
    /// A write or write-side operation (`/execute`, `/promote`).
    Write,
    /// Trough's `POST /?segment=`: a read or a write, decided by running it.
    Either,
}

/// What this node knows when the request arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// This node's reader holds the segment and may answer reads of it.
    pub reads_here: bool,
    /// This node holds the segment's write lease.
    pub writes_here: bool,
    /// The cluster view names a writer for the segment (on any node).
    pub has_writer: bool,
    /// Another node already forwarded this request: never forward it again, so two nodes with
    /// stale views cannot bounce it between them.
    pub forwarded: bool,
}

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Answer on this node (which may still answer "not here" with a clear error).
    Local,
    /// Send to the replicas of the segment, in turn.
    ForwardRead,
    /// Send to the writer of the segment.
    ForwardWrite,
}

/// Where a request `op` on one segment is answered.
pub fn route(op: Op, f: Facts) -> Route {
    if f.forwarded {
        return Route::Local;
    }
    match op {
        Op::Read if f.reads_here => Route::Local,
        Op::Read => Route::ForwardRead,
        Op::Write if f.writes_here => Route::Local,
        Op::Write => Route::ForwardWrite,
        Op::Either if f.reads_here || f.writes_here => Route::Local,
        Op::Either if f.has_writer => Route::ForwardWrite,
        Op::Either => Route::ForwardRead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(reads_here: bool, writes_here: bool, has_writer: bool, forwarded: bool) -> Facts {
        Facts {
            reads_here,
            writes_here,
            has_writer,
            forwarded,
        }
    }

    #[test]
    fn forwarded_requests_are_always_answered_here() {
        for op in [Op::Read, Op::Write, Op::Either] {
            for bits in 0..8u8 {
                let f = facts(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, true);
                assert_eq!(route(op, f), Route::Local, "{op:?} {f:?}");
            }
        }
    }

    #[test]
    fn each_op_goes_where_it_can_be_answered() {
        assert_eq!(
            route(Op::Read, facts(true, false, false, false)),
            Route::Local
        );
        assert_eq!(
            route(Op::Read, facts(false, true, true, false)),
            Route::ForwardRead
        );
        assert_eq!(
            route(Op::Write, facts(true, false, true, false)),
            Route::ForwardWrite
        );
        assert_eq!(
            route(Op::Write, facts(false, true, true, false)),
            Route::Local
        );
        assert_eq!(
            route(Op::Either, facts(false, true, true, false)),
            Route::Local
        );
        assert_eq!(
            route(Op::Either, facts(true, false, true, false)),
            Route::Local
        );
        assert_eq!(
            route(Op::Either, facts(false, false, true, false)),
            Route::ForwardWrite
        );
        assert_eq!(
            route(Op::Either, facts(false, false, false, false)),
            Route::ForwardRead
        );
    }
}
