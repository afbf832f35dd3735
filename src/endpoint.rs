//! Where a server is: `redis://[user[:password]@]host:port[/db]` (and `rediss://` for TLS).
//!
//! The password is kept out of `Debug` and `Display` so that it can never reach a log line,
//! a status page or an error message by accident.

use std::fmt;

/// A parsed server URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The db in the URL path (`/3`), if any.
    pub db: Option<u32>,
    /// `rediss://`.
    pub tls: bool,
    /// CA, client certificate, server name (from the config's `[source.tls]` /
    /// `[target.tls]`); `enabled` there turns TLS on for a `redis://` URL too.
    pub tls_options: crate::net::TlsOptions,
    /// Given as `redis-sentinel://`: the sentinels to ask for the master; `host`/`port`
    /// are then the master's address as last resolved (the first sentinel until then).
    pub sentinel: Option<Sentinel>,
    /// More nodes of the same cluster, given as `redis://host:port,host2:port2,…`: tried in
    /// order when `host:port` does not answer at start ([`Endpoint::first_reachable`]).
    pub seeds: Vec<(String, u16)>,
}

/// Sentinels and the name of the master they watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinel {
    /// `(host, port)` of each sentinel, in the order given.
    pub addrs: Vec<(String, u16)>,
    pub master: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad server URL `{url}`: {reason}")]
pub struct EndpointError {
    /// The URL with any password replaced by `***`.
    pub url: String,
    pub reason: String,
}

impl Endpoint {
    /// Another node of the same cluster: these credentials and TLS settings at `addr`,
    /// db 0, no sentinels.
    pub fn node(&self, addr: &crate::cluster::NodeAddr) -> Endpoint {
        Endpoint {
            host: addr.host.clone(),
            port: addr.port,
            db: None,
            sentinel: None,
            seeds: Vec::new(),
            ..self.clone()
        }
    }

    /// This endpoint, or when its node does not answer a `PING` within `timeout`, the
    /// first of its [`seeds`](Self::seeds) that does (as the endpoint, the others kept as
    /// its seeds). Without seeds, or when none answers, itself: connecting then fails with
    /// the usual error.
    pub async fn first_reachable(&self, timeout: std::time::Duration) -> Endpoint {
        if self.seeds.is_empty() || self.sentinel.is_some() {
            return self.clone();
        }
        let mut all = vec![(self.host.clone(), self.port)];
        all.extend(self.seeds.iter().cloned());
        for (i, (host, port)) in all.iter().enumerate() {
            let mut e = self.clone();
            e.host = host.clone();
            e.port = *port;
            match crate::admin::calls(&e, &[&[b"PING"]], timeout).await {
                Ok(_) => {
                    if i > 0 {
                        tracing::warn!(
                            first = %self.addr(),
                            using = %e.addr(),
                            "the first node of the URL does not answer: using another"
                        );
                    }
                    e.seeds = all
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, a)| a.clone())
                        .collect();
                    return e;
                }
                Err(why) => tracing::warn!(node = %e.addr(), "cluster node does not answer: {why}"),
            }
        }
        self.clone()
    }

    /// Parses `redis://…` / `rediss://…`; a bare `host:port` is taken as `redis://host:port`.
    /// Several nodes of one cluster may be listed, `redis://[user:pw@]h1:p1,h2:p2[/db]`:
    /// the first is the endpoint, the others its [`seeds`](Self::seeds).
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        if let Some(rest) = text.strip_prefix("redis-sentinel://") {
            return Endpoint::parse_sentinel(text, rest);
        }
        let full = if text.contains("://") {
            text.to_string()
        } else {
            format!("redis://{text}")
        };
        if let Some((first, seeds)) = split_hosts(&full) {
            let mut e = Endpoint::parse(&first)?;
            for h in seeds {
                let one = Endpoint::parse(&format!("redis://{h}")).map_err(|e| EndpointError {
                    url: mask(&first),
                    reason: format!("cluster node `{h}`: {}", e.reason),
                })?;
                e.seeds.push((one.host, one.port));
            }
            return Ok(e);
        }
        let bad = |reason: &str| EndpointError {
            url: mask(&full),
            reason: reason.to_string(),
        };
        let u = url::Url::parse(&full).map_err(|e| bad(&e.to_string()))?;
        let tls = match u.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(bad(&format!(
                    "scheme `{other}` (expected redis:// or rediss://)"
                )))
            }
        };
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = u.port().unwrap_or(6379);
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = (!u.username().is_empty()).then(|| decode(u.username()));
        let password = u.password().map(decode);
        let path = u.path().trim_start_matches('/');
        let db = if path.is_empty() {
            None
        } else {
            Some(
                path.parse::<u32>()
                    .map_err(|_| bad(&format!("db `{path}` is not a number")))?,
            )
        };
        Ok(Endpoint {
            host,
            port,
            user,
            password,
            db,
            tls,
            tls_options: Default::default(),
            sentinel: None,
            seeds: Vec::new(),
        })
    }

    /// `redis-sentinel://[user[:password]@]host:port[,host:port…]/master-name[/db]`.
    fn parse_sentinel(text: &str, rest: &str) -> Result<Endpoint, EndpointError> {
        let masked = match rest.rsplit_once('@') {
            Some((a, r)) => match a.split_once(':') {
                Some((u, _)) => format!("redis-sentinel://{u}:***@{r}"),
                None => text.to_string(),
            },
            None => text.to_string(),
        };
        let bad = |reason: &str| EndpointError {
            url: masked.clone(),
            reason: reason.to_string(),
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hosts, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no master name (redis-sentinel://host:port/master-name)"))?;
        let (master, db) = match path.split_once('/') {
            Some((m, d)) => (m, Some(d)),
            None => (path, None),
        };
        if master.is_empty() {
            return Err(bad(
                "no master name (redis-sentinel://host:port/master-name)",
            ));
        }
        let mut addrs = Vec::new();
        for h in hosts.split(',') {
            let one = Endpoint::parse(&format!("redis://{h}"))
                .map_err(|e| bad(&format!("sentinel `{h}`: {}", e.reason)))?;
            addrs.push((one.host, if h.contains(':') { one.port } else { 26379 }));
        }
        // Credentials and db belong to the data node: let the ordinary parser read them.
        let mut data = format!("redis://{}", hosts.split(',').next().unwrap_or_default());
        if let Some(a) = auth {
            data = format!(
                "redis://{a}@{}",
                hosts.split(',').next().unwrap_or_default()
            );
        }
        if let Some(d) = db.filter(|d| !d.is_empty()) {
            data.push('/');
            data.push_str(d);
        }
        let mut e = Endpoint::parse(&data).map_err(|e| bad(&e.reason))?;
        e.host = addrs[0].0.clone();
        e.port = addrs[0].1;
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        e.sentinel = Some(Sentinel {
            addrs,
            master: decode(master),
        });
        Ok(e)
    }

    /// `host:port`, for connecting and for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How long [`Endpoint::first_reachable`] waits for each node where no other timeout is
/// at hand.
pub const DEFAULT_REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `scheme://[auth@]h1,h2,…[/path]` → (`scheme://[auth@]h1[/path]`, [h2, …]); `None`
/// when the URL names one host.
fn split_hosts(url: &str) -> Option<(String, Vec<String>)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, authority),
    };
    if !hosts.contains(',') {
        return None;
    }
    let mut it = hosts.split(',');
    let first = it.next().unwrap_or_default();
    let auth = auth.map(|a| format!("{a}@")).unwrap_or_default();
    Some((
        format!("{scheme}://{auth}{first}{path}"),
        it.map(str::to_string).collect(),
    ))
}

/// The URL with its password (if any) replaced by `***`; a URL that does not parse loses
/// everything between `://` and its last `@`, since a password may hide there.
fn mask(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
            (None, Some(at)) => format!("***{}", &url[at..]),
            _ => url.to_string(),
        },
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.sentinel {
            write!(f, "redis-sentinel://")?;
            if let Some(u) = &self.user {
                write!(f, "{u}@")?;
            }
            let hosts: Vec<String> = s.addrs.iter().map(|(h, p)| format!("{h}:{p}")).collect();
            write!(f, "{}/{}", hosts.join(","), s.master)?;
            if let Some(db) = self.db {
                write!(f, "/{db}")?;
            }
            return Ok(());
        }
        write!(f, "{}://", if self.tls { "rediss" } else { "redis" })?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}", self.addr())?;
        if let Some(db) = self.db {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Endpoint({self}{})",
            if self.password.is_some() {
                ", password set"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_may_list_several_cluster_nodes() {
        let e = Endpoint::parse("redis://app:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.0.0.1", 7000));
        assert_eq!(
            e.seeds,
            [("10.0.0.2".to_string(), 7001), ("::1".to_string(), 7002)]
        );
        assert_eq!(
            (e.user.as_deref(), e.password.as_deref()),
            (Some("app"), Some("pw"))
        );
        let e = Endpoint::parse("rediss://h1:1,h2/0").unwrap();
        assert!(e.tls);
        assert_eq!(
            (e.db, e.seeds.clone()),
            (Some(0), vec![("h2".to_string(), 6379)])
        );
        assert!(Endpoint::parse("h1:7000,h2:7001").is_ok_and(|e| e.seeds.len() == 1));
        let err = Endpoint::parse("redis://u:secret@h1:1,h2:x").unwrap_err();
        assert!(err.to_string().contains("h2:x") && !err.to_string().contains("secret"));
        // A bad first host: the URL does not parse, and its password is not shown.
        for url in [
            "redis://u:secret@h1:x,h2:7001",
            "redis://u:secret@h1:x",
            "u:secret@h:x",
        ] {
            let err = Endpoint::parse(url).unwrap_err().to_string();
            assert!(!err.contains("secret"), "{err}");
        }
        // Another node of the cluster does not carry the list.
        let e = Endpoint::parse("redis://h1:1,h2:2").unwrap();
        let addr = crate::cluster::NodeAddr {
            host: "h3".into(),
            port: 3,
        };
        assert!(e.node(&addr).seeds.is_empty());
    }

    #[test]
    fn parses_users_passwords_and_dbs_and_never_shows_the_password() {
        let e = Endpoint::parse("redis://app:s3cr%40t@10.0.0.1:6380/3").unwrap();
        assert_eq!(e.host, "10.0.0.1");
        assert_eq!(e.port, 6380);
        assert_eq!(e.user.as_deref(), Some("app"));
        assert_eq!(e.password.as_deref(), Some("s3cr@t"));
        assert_eq!(e.db, Some(3));
        assert!(!format!("{e} {e:?}").contains("s3cr"));
        let e = Endpoint::parse("127.0.0.1:7000").unwrap();
        assert_eq!((e.port, e.tls, e.user.clone()), (7000, false, None));
        let e = Endpoint::parse("redis://:pw@h").unwrap();
        assert_eq!(
            (e.user.clone(), e.password.as_deref(), e.port),
            (None, Some("pw"), 6379)
        );
        let err = Endpoint::parse("http://u:topsecret@h:1").unwrap_err();
        assert!(!err.to_string().contains("topsecret"), "{err}");
        assert!(Endpoint::parse("redis://h:1/x").is_err());
        assert!(Endpoint::parse("rediss://[::1]:6379").unwrap().tls);
    }

    #[test]
    fn parses_sentinel_urls() {
        let e =
            Endpoint::parse("redis-sentinel://u:p%40ss@10.0.0.1:26379,10.0.0.2:26380/mymaster/2")
                .unwrap();
        let s = e.sentinel.clone().unwrap();
        assert_eq!(
            s.addrs,
            vec![("10.0.0.1".into(), 26379), ("10.0.0.2".into(), 26380)]
        );
        assert_eq!(s.master, "mymaster");
        assert_eq!(
            (e.user.as_deref(), e.password.as_deref(), e.db),
            (Some("u"), Some("p@ss"), Some(2))
        );
        assert_eq!(
            e.to_string(),
            "redis-sentinel://u@10.0.0.1:26379,10.0.0.2:26380/mymaster/2"
        );
        assert!(!format!("{e:?}").contains("p@ss"));
        let e = Endpoint::parse("redis-sentinel://h/m").unwrap();
        assert_eq!(e.sentinel.unwrap().addrs, vec![("h".into(), 26379)]);
        assert!(Endpoint::parse("redis-sentinel://h:1").is_err());
        assert!(Endpoint::parse("redis-sentinel://h:1/").is_err());
        assert!(Endpoint::parse("redis-sentinel://h:x/m").is_err());
        let err = Endpoint::parse("redis-sentinel://u:topsecret@h:1").unwrap_err();
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }
}
