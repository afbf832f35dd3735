//! What to do with an error reply: the classes, and the policy the operator sets.
//!
//! Every error reply falls in one class, decided by its code (the first word):
//!
//! * `Retry`: LOADING BUSY TRYAGAIN OOM MASTERDOWN CLUSTERDOWN NOREPLICAS READONLY
//!   MISCONF. The writer stops sending, drains, backs off and sends the failed commands
//!   again.
//! * `Redirect`: MOVED ASK. Fatal for one writer: a cluster target needs the router in
//!   front of its writers.
//! * `Fatal`: NOAUTH NOPERM WRONGPASS, and any error to the writer's own `SELECT`.
//! * `BusyKey`: BUSYKEY (and `:0` from a guard's `RENAMENX`): [`ErrorPolicy::busykey`].
//! * `Skip`: everything else (WRONGTYPE, `ERR …`): [`ErrorPolicy::on_error`].
//!
//! The retry class is what a healthy server answers while it cannot take writes *for
//! now*: it is loading, running a script, short of memory, failing over. Nothing was
//! executed, so sending the same command again later is exactly what the operator wants
//! (trap 13 of the peers: exiting on OOM, READONLY or LOADING).

/// What to do with an error of the skip class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Record it (named key, counted, logged), and carry on.
    Skip,
    /// Stop: the writer returns the error.
    Stop,
}

/// What to do when the target already has a key the source is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Overwrite it (`RESTORE … REPLACE`, `DEL` before the commands).
    Replace,
    /// Keep the target's key; record the source key as skipped.
    Skip,
    /// Stop with an error.
    Error,
}

/// The operator's error policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    /// Errors of the skip class (WRONGTYPE, `ERR …`).
    pub on_error: OnError,
    /// `BUSYKEY` replies. Must agree with the rewriter's [`Conflict`]: with `Replace` no
    /// BUSYKEY is expected, and one that comes anyway is judged by `on_error`.
    pub busykey: Conflict,
    /// Retry rounds a command may fail before the writer gives up on it and judges its
    /// last error by `on_error`. `None`: retry for as long as it takes.
    pub max_retries: Option<u32>,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy {
            on_error: OnError::Skip,
            busykey: Conflict::Replace,
            max_retries: None,
        }
    }
}

/// The class of an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Retry,
    Redirect,
    Fatal,
    BusyKey,
    Skip,
}

/// The class of an error reply and the name it is counted under in
/// [`WriterStats::errors_by_class`](super::WriterStats).
pub fn classify(text: &[u8]) -> (Class, &'static str) {
    let code = text.split(|&b| b == b' ').next().unwrap_or_default();
    const RETRY: &[&str] = &[
        "LOADING",
        "BUSY",
        "TRYAGAIN",
        "OOM",
        "MASTERDOWN",
        "CLUSTERDOWN",
        "NOREPLICAS",
        "READONLY",
        "MISCONF",
    ];
    const FATAL: &[&str] = &["NOAUTH", "NOPERM", "WRONGPASS"];
    const SKIP: &[&str] = &["WRONGTYPE", "EXECABORT", "NOSCRIPT", "BUSYGROUP", "NOGROUP"];
    let find = |list: &[&'static str]| list.iter().copied().find(|c| c.as_bytes() == code);
    if let Some(c) = find(RETRY) {
        return (Class::Retry, c);
    }
    if let Some(c) = find(&["MOVED", "ASK"]) {
        return (Class::Redirect, c);
    }
    if let Some(c) = find(FATAL) {
        return (Class::Fatal, c);
    }
    if code == b"BUSYKEY" {
        return (Class::BusyKey, "BUSYKEY");
    }
    if let Some(c) = find(SKIP) {
        return (Class::Skip, c);
    }
    if code == b"ERR" {
        let rest = &text[3..];
        let has = |needle: &str| {
            rest.windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        };
        let name = if has("DUMP payload version") || has("Bad data format") {
            "payload"
        } else if has("unknown command") {
            "unknown-command"
        } else if has("invalid password") || has("AUTH") && has("password") {
            return (Class::Fatal, "auth");
        } else {
            "ERR"
        };
        return (Class::Skip, name);
    }
    (Class::Skip, "other")
}

/// Advice for the operator that an error message can carry.
pub fn hint(class_name: &str) -> &'static str {
    match class_name {
        "payload" => {
            " (the target cannot load this RESTORE payload: write values as commands \
             (restore mode `commands`) or upgrade the target)"
        }
        "NOAUTH" | "auth" | "WRONGPASS" => {
            " (put the user and password in the target URL: redis://user:password@host:port)"
        }
        "NOPERM" => " (the target's ACL user lacks a permission ferry needs)",
        "MOVED" | "ASK" => " (the target is a cluster: ferry must route by slot to it)",
        "BUSYKEY" => " (the key exists on the target; the conflict policy is `error`)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_code() {
        let c = |t: &str| classify(t.as_bytes());
        assert_eq!(
            c("LOADING Redis is loading the dataset in memory"),
            (Class::Retry, "LOADING")
        );
        assert_eq!(
            c("BUSY Redis is busy running a script."),
            (Class::Retry, "BUSY")
        );
        assert_eq!(
            c("BUSYKEY Target key name already exists."),
            (Class::BusyKey, "BUSYKEY")
        );
        assert_eq!(
            c("OOM command not allowed when used memory > 'maxmemory'."),
            (Class::Retry, "OOM")
        );
        assert_eq!(c("MOVED 3999 127.0.0.1:6381"), (Class::Redirect, "MOVED"));
        assert_eq!(
            c("NOAUTH Authentication required."),
            (Class::Fatal, "NOAUTH")
        );
        assert_eq!(
            c("WRONGTYPE Operation against a key holding the wrong kind of value"),
            (Class::Skip, "WRONGTYPE")
        );
        assert_eq!(
            c("ERR DUMP payload version or checksum are wrong"),
            (Class::Skip, "payload")
        );
        assert_eq!(
            c("ERR unknown command 'XADD', with args beginning with: "),
            (Class::Skip, "unknown-command")
        );
        assert_eq!(c("ERR invalid password"), (Class::Fatal, "auth"));
        assert_eq!(c("ERR syntax error"), (Class::Skip, "ERR"));
        assert_eq!(c("WEIRD thing"), (Class::Skip, "other"));
        assert_eq!(c(""), (Class::Skip, "other"));
    }
}
