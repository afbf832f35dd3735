//! One-shot administrative commands to a server (`INFO`, `CLIENT PAUSE`, a heartbeat
//! `SET`): a fresh connection (TLS per the endpoint), `AUTH` and the URL's db first, one
//! command, its reply. For the few calls around a sync (its `--once` target offset, the
//! heartbeat, `ferry cutover`), not for data.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::endpoint::Endpoint;
use crate::resp::{self, Frame};

/// One command on a fresh connection (AUTH and the URL's db first): its reply, or an
/// error naming the server when it cannot be had or is an error reply.
pub async fn command(ep: &Endpoint, argv: &[&[u8]], timeout: Duration) -> Result<Frame, String> {
    let addr = ep.addr();
    let name = String::from_utf8_lossy(argv.first().copied().unwrap_or_default()).into_owned();
    let fut = async {
        let mut s = crate::net::connect(ep)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut out = Vec::new();
        let mut want = 1;
        if let Some(pw) = &ep.password {
            want += 1;
            match &ep.user {
                Some(u) => resp::encode_command(
                    &mut out,
                    &[b"AUTH".as_slice(), u.as_bytes(), pw.as_bytes()],
                ),
                None => resp::encode_command(&mut out, &[b"AUTH".as_slice(), pw.as_bytes()]),
            }
        }
        if let Some(db) = ep.db.filter(|&d| d != 0) {
            want += 1;
            resp::encode_command(&mut out, &[b"SELECT".as_slice(), db.to_string().as_bytes()]);
        }
        resp::encode_command(&mut out, argv);
        s.write_all(&out)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        while replies.len() < want {
            let mut chunk = [0u8; 16 * 1024];
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            if n == 0 {
                return Err(format!("{addr}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some((f, len)) = resp::parse_frame(&buf, &resp::Limits::default())
                .map_err(|e| format!("{addr}: {e}"))?
            {
                buf.drain(..len);
                replies.push(f);
            }
        }
        // The first error reply (a refused AUTH explains everything after it).
        if let Some(f) = replies.iter().find(|f| f.is_error()) {
            return Err(format!(
                "{addr}: {name} failed: {}",
                String::from_utf8_lossy(f.error_text().unwrap_or_default())
            ));
        }
        replies
            .pop()
            .ok_or_else(|| format!("{addr}: no reply to {name}"))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("{addr}: {name} timed out"))?
}

/// `INFO <section>` as text.
pub async fn info_section(
    ep: &Endpoint,
    section: &str,
    timeout: Duration,
) -> Result<String, String> {
    match command(ep, &[b"INFO", section.as_bytes()], timeout).await? {
        Frame::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        other => Err(format!("{}: unexpected INFO reply {other:?}", ep.addr())),
    }
}

/// The value of `name` in an `INFO` text.
pub fn info_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The server's `master_repl_offset`.
pub async fn repl_offset(ep: &Endpoint, timeout: Duration) -> Result<u64, String> {
    let text = info_section(ep, "replication", timeout).await?;
    info_field(&text, "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{}: INFO replication has no master_repl_offset", ep.addr()))
}

#[cfg(test)]
mod tests {
    use super::info_field;

    #[test]
    fn info_fields_are_found_by_exact_name() {
        let text =
            "# Replication\r\nrole:master\r\nmaster_repl_offset:42\r\nmaster_repl_offset_x:1\r\n";
        assert_eq!(info_field(text, "master_repl_offset"), Some("42"));
        assert_eq!(info_field(text, "role"), Some("master"));
        assert_eq!(info_field(text, "master"), None);
    }
}
