//! One-shot administrative commands to a server (`INFO`, `CLIENT PAUSE`, …): connect,
//! `AUTH` when the endpoint has a password, send the commands pipelined, read one reply
//! each. For the few calls around a sync (its `--once` target offset, `ferry cutover`),
//! not for data.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::endpoint::Endpoint;
use crate::resp::{self, Frame};

/// Sends `commands` in one write (after `AUTH`) and returns their replies in order. An
/// error reply is returned as a `Frame`, not as `Err`, except for `AUTH`'s.
pub async fn commands(
    ep: &Endpoint,
    commands: &[&[&[u8]]],
    timeout: Duration,
) -> Result<Vec<Frame>, String> {
    let addr = ep.addr();
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut out = Vec::new();
        if let Some(pw) = &ep.password {
            match &ep.user {
                Some(u) => resp::encode_command(
                    &mut out,
                    &[b"AUTH".as_slice(), u.as_bytes(), pw.as_bytes()],
                ),
                None => resp::encode_command(&mut out, &[b"AUTH".as_slice(), pw.as_bytes()]),
            }
        }
        for c in commands {
            resp::encode_command(&mut out, c);
        }
        s.write_all(&out)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        let want = commands.len() + usize::from(ep.password.is_some());
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
        if ep.password.is_some() {
            let auth = replies.remove(0);
            if auth.is_error() {
                return Err(format!(
                    "{addr}: AUTH refused: {}",
                    String::from_utf8_lossy(auth.error_text().unwrap_or_default())
                ));
            }
        }
        Ok(replies)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("{addr}: no reply within {timeout:?}"))?
}

/// One command; an error reply is an `Err` naming it.
pub async fn command(ep: &Endpoint, args: &[&[u8]], timeout: Duration) -> Result<Frame, String> {
    let reply = commands(ep, &[args], timeout)
        .await?
        .pop()
        .ok_or_else(|| format!("{}: no reply", ep.addr()))?;
    if reply.is_error() {
        return Err(format!(
            "{}: {} refused: {}",
            ep.addr(),
            String::from_utf8_lossy(args.first().copied().unwrap_or_default()),
            String::from_utf8_lossy(reply.error_text().unwrap_or_default())
        ));
    }
    Ok(reply)
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
