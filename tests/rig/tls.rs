//! The rig's own certificate authority, and TLS for its servers and its raw
//! HTTP helpers.
//!
//! Made once per process, on first use, into a temporary directory removed
//! when the process exits (left behind only if it is killed): a CA
//! ("ecr-bridge rig CA") and certificates it signs for the rig's servers
//! ([`ServerCert`]), plus one from a second authority nobody trusts. Keys
//! are ECDSA P-256; certificates are valid from a day ago for 30 days
//! (the expired one ended a day ago).
//!
//! Who trusts what:
//! * the code under test trusts the rig CA through its normal root store,
//!   once [`trust_rig_ca`] has pointed `SSL_CERT_FILE` at
//!   [`RigTls::bundle_path`] (or a child process gets that variable);
//! * skopeo gets [`RigTls::cert_dir`] (`--src-cert-dir`/`--dest-cert-dir`);
//! * the rig's own helpers ([`crate::http_request`], [`crate::Registry::http`],
//!   the fault proxy's upstream connections) accept every certificate the
//!   rig made, whatever its name or dates, so they can also talk to the
//!   servers set up to be refused. They are the rig, not the client under test.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
};

/// Which certificate a rig TLS server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerCert {
    /// For `localhost`, `127.0.0.1` and `::1`, signed by the rig CA.
    #[default]
    Rig,
    /// For `other.invalid` only, signed by the rig CA: a trusted
    /// certificate for another name.
    OtherName,
    /// For `localhost`, `127.0.0.1` and `::1`, signed by another authority
    /// that is in no root store.
    OtherAuthority,
    /// For `localhost`, `127.0.0.1` and `::1`, signed by the rig CA, expired.
    Expired,
}

impl ServerCert {
    const ALL: [ServerCert; 4] = [
        ServerCert::Rig,
        ServerCert::OtherName,
        ServerCert::OtherAuthority,
        ServerCert::Expired,
    ];

    fn file_stem(self) -> &'static str {
        match self {
            ServerCert::Rig => "server",
            ServerCert::OtherName => "other-name",
            ServerCert::OtherAuthority => "other-authority",
            ServerCert::Expired => "expired",
        }
    }
}

/// A server certificate and its key, on disk and in memory.
pub struct Leaf {
    /// PEM certificate (for docker-registry's `http.tls.certificate`).
    pub cert_path: PathBuf,
    /// PEM PKCS#8 key (`http.tls.key`).
    pub key_path: PathBuf,
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

/// The rig's CA and the certificates it made; see the module docs.
pub struct RigTls {
    dir: PathBuf,
    ca_der: CertificateDer<'static>,
    other_ca_der: CertificateDer<'static>,
    leaves: Vec<(ServerCert, Leaf)>,
}

/// This process's CA, made on first use.
pub fn rig_tls() -> &'static RigTls {
    static TLS: OnceLock<RigTls> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rig-tls-")
            .tempdir()
            .expect("creating the rig CA's directory")
            .keep();
        let tls = RigTls::generate(dir).unwrap_or_else(|e| panic!("making the rig CA: {e}"));
        remove_at_exit(&tls.dir);
        tls
    })
}

/// Makes the code under test trust the rig CA: sets `SSL_CERT_FILE` to
/// [`RigTls::bundle_path`] (the rig CA, then the system's bundle if there is
/// one) and returns that path.
///
/// **Call it first**, before anything builds an HTTP client: reqwest's
/// rustls verifier (rustls-platform-verifier, which on Linux loads its roots
/// through rustls-native-certs) reads `SSL_CERT_FILE` when a client is
/// *built*, and a client built earlier never sees the CA. nextest runs each
/// test in its own process, so the variable is that test's alone; under
/// `cargo test` the tests of one binary share it (harmless while they all set
/// the same value, as every caller of this function does).
pub fn trust_rig_ca() -> PathBuf {
    let bundle = rig_tls().bundle_path();
    std::env::set_var("SSL_CERT_FILE", &bundle);
    bundle
}

impl RigTls {
    fn generate(dir: PathBuf) -> Result<RigTls, String> {
        let err = |e: rcgen::Error| e.to_string();
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let ca =
            |name: &str| -> Result<(CertificateDer<'static>, Issuer<'static, KeyPair>), String> {
                let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
                p.distinguished_name.push(DnType::CommonName, name);
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
                (p.not_before, p.not_after) = (now - day, now + day * 30);
                let key = KeyPair::generate().map_err(err)?;
                let cert = p.self_signed(&key).map_err(err)?;
                Ok((cert.der().clone(), Issuer::new(p, key)))
            };
        let (ca_der, rig_ca) = ca("ecr-bridge rig CA")?;
        let (other_ca_der, other_ca) = ca("some other CA")?;
        let loopback = || vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("writing {}: {e}", p.display()))?;
            Ok(p)
        };
        let mut leaves = Vec::new();
        for which in ServerCert::ALL {
            let (names, issuer, (from, until)) = match which {
                ServerCert::Rig => (loopback(), &rig_ca, (now - day, now + day * 30)),
                ServerCert::OtherName => (
                    vec!["other.invalid".into()],
                    &rig_ca,
                    (now - day, now + day * 30),
                ),
                ServerCert::OtherAuthority => (loopback(), &other_ca, (now - day, now + day * 30)),
                ServerCert::Expired => (loopback(), &rig_ca, (now - day * 30, now - day)),
            };
            let mut p = CertificateParams::new(names).map_err(err)?;
            p.distinguished_name
                .push(DnType::CommonName, format!("rig {}", which.file_stem()));
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.use_authority_key_identifier_extension = true;
            (p.not_before, p.not_after) = (from, until);
            let key = KeyPair::generate().map_err(err)?;
            let cert = p.signed_by(&key, issuer).map_err(err)?;
            let stem = which.file_stem();
            leaves.push((
                which,
                Leaf {
                    cert_path: write(&format!("{stem}.crt"), &cert.pem())?,
                    key_path: write(&format!("{stem}.key"), &key.serialize_pem())?,
                    cert: cert.der().clone(),
                    key: key.serialize_der(),
                },
            ));
        }
        let ca_pem = pem("CERTIFICATE", &ca_der);
        write("ca.crt", &ca_pem)?;
        std::fs::create_dir_all(dir.join("cert-dir")).map_err(|e| e.to_string())?;
        write("cert-dir/ca.crt", &ca_pem)?;
        // What SSL_CERT_FILE points at: the rig CA, and the system's roots so
        // that real hosts still verify.
        let system = [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
        write("bundle.pem", &format!("{ca_pem}{system}"))?;
        Ok(RigTls {
            dir,
            ca_der,
            other_ca_der,
            leaves,
        })
    }

    /// The directory holding everything below.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The rig CA's certificate, PEM.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A directory holding only `ca.crt` (the rig CA), as skopeo's
    /// `--src-cert-dir` / `--dest-cert-dir` want it.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.join("cert-dir")
    }

    /// The rig CA followed by the system's CA bundle, for `SSL_CERT_FILE`.
    pub fn bundle_path(&self) -> PathBuf {
        self.dir.join("bundle.pem")
    }

    /// The rig CA's certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    pub fn leaf(&self, which: ServerCert) -> &Leaf {
        &self
            .leaves
            .iter()
            .find(|(w, _)| *w == which)
            .expect("every kind is made")
            .1
    }

    /// What a rig TLS server presenting `which` is configured with.
    pub(crate) fn server_config(&self, which: ServerCert) -> Arc<ServerConfig> {
        let leaf = self.leaf(which);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone()));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert.clone()], key)
            .expect("rig server certificate");
        Arc::new(config)
    }

    /// What the rig's own clients use (see the module docs).
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                roots.add(self.ca_der.clone()).expect("rig CA");
                roots.add(self.other_ca_der.clone()).expect("other CA");
                let inner = WebPkiServerVerifier::builder_with_provider(roots.into(), provider())
                    .build()
                    .expect("rig verifier");
                let mut config = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .expect("TLS versions")
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyRigCertificate(inner)))
                    .with_no_client_auth();
                // Every rig server is 127.0.0.1 (on its own port): a session
                // ticket from one is no good at another.
                config.resumption = rustls::client::Resumption::disabled();
                Arc::new(config)
            })
            .clone()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn remove_at_exit(dir: &Path) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove() {
        if let Some(d) = DIR.get() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    if DIR.set(dir.to_path_buf()).is_ok() {
        // SAFETY: registers a plain function with no arguments.
        unsafe { libc::atexit(remove) };
    }
}

/// A chain to either of the rig's authorities, whatever the name or dates.
#[derive(Debug)]
struct AnyRigCertificate(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyRigCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. }
                | CertificateError::Expired
                | CertificateError::ExpiredContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A connection of the rig's, plain or TLS (either side). A TLS one sends
/// `close_notify` when dropped, unless [`Conn::reset`] or
/// [`Conn::shutdown_write`] ended it abruptly.
pub(crate) struct Conn {
    inner: Inner,
    abrupt: bool,
}

enum Inner {
    Plain(TcpStream),
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    pub(crate) fn plain(tcp: TcpStream) -> Conn {
        Conn {
            inner: Inner::Plain(tcp),
            abrupt: false,
        }
    }

    /// The server side of a connection accepted by a server with `config`
    /// (None: plain). The handshake happens on the first read.
    pub(crate) fn accept(tcp: TcpStream, config: Option<&Arc<ServerConfig>>) -> io::Result<Conn> {
        let Some(config) = config else {
            return Ok(Conn::plain(tcp));
        };
        let conn = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        Ok(Conn {
            inner: Inner::Server(Box::new(StreamOwned::new(conn, tcp))),
            abrupt: false,
        })
    }

    /// Connects to `target`: `https://host:port` (TLS, see the module docs),
    /// `http://host:port` or `host:port` (plain).
    pub(crate) fn connect(target: &str) -> io::Result<Conn> {
        let (tls, authority) = split_target(target);
        let tcp = TcpStream::connect(authority)?;
        if !tls {
            return Ok(Conn::plain(tcp));
        }
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn =
            ClientConnection::new(rig_tls().client_config(), name).map_err(io::Error::other)?;
        Ok(Conn {
            inner: Inner::Client(Box::new(StreamOwned::new(conn, tcp))),
            abrupt: false,
        })
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(s) => s,
            Inner::Server(s) => s.get_ref(),
            Inner::Client(s) => s.get_ref(),
        }
    }

    /// Ends the connection with a TCP RST (SO_LINGER 0), no `close_notify`.
    pub(crate) fn reset(mut self) -> io::Result<()> {
        self.abrupt = true;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        use std::os::fd::AsRawFd;
        // SAFETY: a valid socket fd and a correctly sized option value.
        let rc = unsafe {
            libc::setsockopt(
                self.tcp().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Closes the sending side (TCP FIN) without `close_notify`: to the
    /// peer, a response cut short.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        self.abrupt = true;
        self.tcp().shutdown(Shutdown::Write)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.abrupt {
            return;
        }
        match &mut self.inner {
            Inner::Plain(_) => {}
            Inner::Server(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
            }
            Inner::Client(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.read(buf),
            Inner::Server(s) => s.read(buf),
            // A server that closes without close_notify after its answer
            // (we asked for `Connection: close`): the end of the answer.
            Inner::Client(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.write(buf),
            Inner::Server(s) => s.write(buf),
            Inner::Client(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(s) => s.flush(),
            Inner::Server(s) => s.flush(),
            Inner::Client(s) => s.flush(),
        }
    }
}

/// (TLS?, `host:port`) of `https://host:port`, `http://host:port` or `host:port`.
pub(crate) fn split_target(target: &str) -> (bool, &str) {
    let t = target.trim_end_matches('/');
    match t.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix("http://").unwrap_or(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_targets_when_split_then_the_scheme_decides_tls() {
        assert_eq!(
            split_target("https://127.0.0.1:5000"),
            (true, "127.0.0.1:5000")
        );
        assert_eq!(
            split_target("http://127.0.0.1:5000/"),
            (false, "127.0.0.1:5000")
        );
        assert_eq!(split_target("127.0.0.1:5000"), (false, "127.0.0.1:5000"));
    }

    #[test]
    fn given_the_rig_ca_when_made_then_its_files_are_pem_and_the_cert_dir_holds_only_ca_crt() {
        let t = rig_tls();
        let ca = std::fs::read_to_string(t.ca_path()).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----\n"), "{ca}");
        let bundle = std::fs::read_to_string(t.bundle_path()).unwrap();
        assert!(bundle.starts_with(&ca));
        let names: Vec<_> = std::fs::read_dir(t.cert_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["ca.crt"]);
        for which in ServerCert::ALL {
            let leaf = t.leaf(which);
            let key = std::fs::read_to_string(&leaf.key_path).unwrap();
            assert!(key.contains("PRIVATE KEY"), "{which:?}");
            assert!(leaf.cert_path.exists());
        }
    }
}
