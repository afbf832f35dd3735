//! Connections to servers: plain TCP, or TLS (rustls) for `rediss://` URLs and endpoints
//! whose [`TlsOptions`] say so.
//!
//! [`connect`] gives a [`NetStream`], which the replica link and the writer use like a
//! `TcpStream` (`AsyncRead + AsyncWrite`, `set_nodelay`, `into_split`). A plain connection
//! stays a bare `TcpStream` inside (its halves are tokio's owned halves), so TLS costs
//! nothing to those who do not use it.
//!
//! Certificates: the server's chain is checked against `ca_file` (PEM), or, without one,
//! against the system's CA bundle (`$SSL_CERT_FILE` or the usual Debian / RHEL / Alpine
//! paths). `cert_file` + `key_file` give a client certificate for servers with
//! `tls-auth-clients yes`. The name checked is `server_name`, or the URL's host.
//! `insecure_skip_verify` accepts any certificate and says so in the log.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::endpoint::Endpoint;

/// How to speak TLS to one endpoint (`[source.tls]` / `[target.tls]`). TLS is on when the
/// URL is `rediss://` or `enabled` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub enabled: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// Opens a connection to `ep` (TCP, then the TLS handshake when TLS is on). Errors name
/// the cause (refused, a certificate the CA does not vouch for, a file that is not PEM).
pub async fn connect(ep: &Endpoint) -> io::Result<NetStream> {
    let tcp = TcpStream::connect(ep.addr()).await?;
    if !(ep.tls || ep.tls_options.enabled) {
        return Ok(NetStream::Tcp(tcp));
    }
    let config = client_config(&ep.tls_options)?;
    let name = ep.tls_options.server_name.as_deref().unwrap_or(&ep.host);
    let name = ServerName::try_from(name.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TLS server name `{name}`: {e}"),
        )
    })?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
    Ok(NetStream::Tls(Box::new(tls)))
}

/// The rustls client config for these options.
pub fn client_config(o: &TlsOptions) -> io::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let builder = if o.insecure_skip_verify {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "TLS insecure_skip_verify is set: server certificates are NOT checked; \
                 anyone on the path can read and change the data"
            );
        }
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        let ca = match &o.ca_file {
            Some(f) => f.clone(),
            None => system_ca_bundle().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "TLS: no ca_file given and no system CA bundle found; set ca_file",
                )
            })?,
        };
        for cert in read_certs(&ca)? {
            roots
                .add(cert)
                .map_err(|e| bad_file(&ca, &format!("a CA certificate is unusable: {e}")))?;
        }
        builder.with_root_certificates(roots)
    };
    match (&o.cert_file, &o.key_file) {
        (Some(c), Some(k)) => {
            let chain = read_certs(c)?;
            let key = PrivateKeyDer::from_pem_file(k)
                .map_err(|e| bad_file(k, &format!("no private key in PEM: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad_file(c, &format!("client certificate: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TLS: a client certificate needs both cert_file and key_file",
        )),
    }
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad_file(path, &format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad_file(path, "holds no certificate"));
    }
    Ok(certs)
}

fn bad_file(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("TLS file {}: {what}", path.display()),
    )
}

fn system_ca_bundle() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}

/// `insecure_skip_verify`: every certificate is accepted; signatures are still checked so
/// the handshake itself is sound.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection to a server: plain or TLS.
#[derive(Debug)]
pub enum NetStream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl NetStream {
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            NetStream::Tcp(s) => s.set_nodelay(on),
            NetStream::Tls(s) => s.get_ref().0.set_nodelay(on),
        }
    }

    /// Read and write halves usable from two tasks (tokio's owned halves for TCP).
    pub fn into_split(self) -> (NetReadHalf, NetWriteHalf) {
        match self {
            NetStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (NetReadHalf::Tcp(r), NetWriteHalf::Tcp(w))
            }
            NetStream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (NetReadHalf::Tls(r), NetWriteHalf::Tls(w))
            }
        }
    }
}

#[derive(Debug)]
pub enum NetReadHalf {
    Tcp(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

#[derive(Debug)]
pub enum NetWriteHalf {
    Tcp(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

/// `AsyncRead` by delegation to whichever variant is inside.
macro_rules! delegate_read {
    ($t:ty, $($v:ident),+) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }
    };
}

/// `AsyncWrite` by delegation, vectored writes included (the writer relies on them).
macro_rules! delegate_write {
    ($t:ty, $($v:ident),+) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_write_vectored(cx, bufs),)+
                }
            }
            fn is_write_vectored(&self) -> bool {
                match self {
                    $(Self::$v(s) => s.is_write_vectored(),)+
                }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_flush(cx),)+
                }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

delegate_read!(NetStream, Tcp, Tls);
delegate_write!(NetStream, Tcp, Tls);
delegate_read!(NetReadHalf, Tcp, Tls);
delegate_write!(NetWriteHalf, Tcp, Tls);
