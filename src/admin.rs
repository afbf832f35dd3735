//! One-shot administrative commands to a server (`INFO`, `CLIENT PAUSE`, a heartbeat
//! `SET`, the slot map, the command table, a sentinel's master): a fresh connection (TLS
//! per the endpoint), `AUTH` and the URL's db first, the commands, their replies. For the
//! few calls outside the data path, not for data.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::endpoint::Endpoint;
use crate::resp::{self, Frame};

/// Sends `cmds` on one fresh connection (TLS per the endpoint; `AUTH` first when it has a
/// password, `SELECT` when its URL names a db other than 0) and returns their replies, an
/// error reply as a `Frame`. A refused `AUTH` is an `Err`, except the "no password is set"
/// of a server that needs none. Errors name the server.
pub async fn calls(
    ep: &Endpoint,
    cmds: &[&[&[u8]]],
    timeout: Duration,
) -> Result<Vec<Frame>, String> {
    let addr = ep.addr();
    let fut = async {
        let mut s = crate::net::connect(ep)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut out = Vec::new();
        let auth = ep.password.is_some();
        if let Some(pw) = &ep.password {
            match &ep.user {
                Some(u) => resp::encode_command(
                    &mut out,
                    &[b"AUTH".as_slice(), u.as_bytes(), pw.as_bytes()],
                ),
                None => resp::encode_command(&mut out, &[b"AUTH".as_slice(), pw.as_bytes()]),
            }
        }
        let select = ep.db.filter(|&d| d != 0);
        if let Some(db) = select {
            resp::encode_command(&mut out, &[b"SELECT".as_slice(), db.to_string().as_bytes()]);
        }
        for c in cmds {
            resp::encode_command(&mut out, c);
        }
        s.write_all(&out)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        s.flush().await.map_err(|e| format!("{addr}: {e}"))?;
        let want = cmds.len() + usize::from(auth) + usize::from(select.is_some());
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        let limits = resp::Limits::default();
        let mut chunk = vec![0u8; 64 << 10];
        while replies.len() < want {
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            if n == 0 {
                return Err(format!("{addr}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut pos = 0;
            while let Some((f, len)) =
                resp::parse_frame(&buf[pos..], &limits).map_err(|e| format!("{addr}: {e}"))?
            {
                pos += len;
                replies.push(f);
            }
            buf.drain(..pos);
        }
        if auth {
            let a = replies.remove(0);
            if let Some(e) = a.error_text() {
                let t = String::from_utf8_lossy(e);
                if !(t.contains("no password is set") || t.contains("without any password")) {
                    return Err(format!("{addr}: AUTH refused: {t}"));
                }
            }
        }
        if select.is_some() {
            let r = replies.remove(0);
            if let Some(e) = r.error_text() {
                return Err(format!(
                    "{addr}: SELECT refused: {}",
                    String::from_utf8_lossy(e)
                ));
            }
        }
        Ok(replies)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("{addr}: no answer within {timeout:?}"))?
}

/// One command (see [`calls`]): its reply, or an error naming the server when it cannot
/// be had or is an error reply.
pub async fn command(ep: &Endpoint, argv: &[&[u8]], timeout: Duration) -> Result<Frame, String> {
    let name = String::from_utf8_lossy(argv.first().copied().unwrap_or_default()).into_owned();
    let reply = calls(ep, &[argv], timeout)
        .await?
        .pop()
        .ok_or_else(|| format!("{}: no reply to {name}", ep.addr()))?;
    match reply.error_text() {
        Some(e) => Err(format!(
            "{}: {name} failed: {}",
            ep.addr(),
            String::from_utf8_lossy(e)
        )),
        None => Ok(reply),
    }
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
