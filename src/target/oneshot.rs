//! A short-lived connection for the few questions asked outside the data path: the slot
//! map, the command table. Authenticates like the writer; every reply is read whole.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::endpoint::Endpoint;
use crate::resp::{self, Frame, Limits};

/// Sends each command of `cmds` on one new connection (after `AUTH` when the endpoint
/// has a password) and returns their replies. Errors name the server.
pub async fn call(
    ep: &Endpoint,
    cmds: &[&[&[u8]]],
    timeout: Duration,
) -> Result<Vec<Frame>, String> {
    let addr = ep.addr();
    let fut = async {
        let mut s = TcpStream::connect(&addr)
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
        for c in cmds {
            resp::encode_command(&mut out, c);
        }
        s.write_all(&out)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let want = cmds.len() + usize::from(auth);
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        let limits = Limits::default();
        while replies.len() < want {
            let mut chunk = vec![0u8; 64 << 10];
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
        Ok(replies)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("{addr}: no answer within {timeout:?}"))?
}
