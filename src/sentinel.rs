//! Sentinel: which server is the master now (`SENTINEL get-master-addr-by-name`).
//!
//! An endpoint given as `redis-sentinel://s1:p1,s2:p2/name` is resolved when a
//! connection is made: the sentinels are asked in the order given, the first answer
//! wins. The replica link resolves again on every reconnect, so after a failover it
//! continues (`PSYNC replid offset`) from the new master, which knows the old history.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::resp::Frame;

/// `ep` with `host`/`port` set to the current master when it names sentinels; `ep`
/// itself otherwise. Errors name every sentinel tried.
pub async fn resolve(ep: &Endpoint, timeout: Duration) -> Result<Endpoint, String> {
    let Some(s) = &ep.sentinel else {
        return Ok(ep.clone());
    };
    let mut errors = Vec::new();
    for (host, port) in &s.addrs {
        let sentinel = Endpoint {
            host: host.clone(),
            port: *port,
            user: None,
            password: None,
            db: None,
            tls: false,
            tls_options: Default::default(),
            sentinel: None,
            seeds: Vec::new(),
        };
        let cmd: &[&[u8]] = &[b"SENTINEL", b"get-master-addr-by-name", s.master.as_bytes()];
        match crate::admin::calls(&sentinel, &[cmd], timeout).await {
            Ok(r) => match r.first() {
                Some(Frame::Array(a)) if a.len() == 2 => {
                    let h = a[0]
                        .as_bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned());
                    let p = a[1].to_i64().and_then(|p| u16::try_from(p).ok());
                    if let (Some(h), Some(p)) = (h, p) {
                        return Ok(Endpoint {
                            host: h,
                            port: p,
                            ..ep.clone()
                        });
                    }
                    errors.push(format!("{host}:{port}: odd answer {a:?}"));
                }
                other => errors.push(format!(
                    "{host}:{port}: does not know master `{}` ({other:?})",
                    s.master
                )),
            },
            Err(e) => errors.push(e),
        }
    }
    Err(format!(
        "no sentinel named the master `{}`: {}",
        s.master,
        errors.join("; ")
    ))
}
