//! TLS failures read out of a transport error's chain: a refused
//! certificate (rustls's "invalid peer certificate: ..."), and a server
//! that answers a TLS handshake in plain HTTP. Both are final: they name a
//! setup to fix, not a network to wait out.

/// rustls's "invalid peer certificate: ..." anywhere in the error's chain
/// (tokio-rustls hands it up inside an `io::Error`): (problem, reason).
pub(super) fn certificate_problem(error: &reqwest::Error) -> Option<(&'static str, String)> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if let Some(at) = text.find("invalid peer certificate") {
            let reason = text[at..].to_string();
            let problem =
                if reason.contains("not valid for name") || reason.contains("NotValidForName") {
                    "not valid for this name"
                } else if reason.contains("expired") || reason.contains("Expired") {
                    "expired"
                } else if reason.contains("not valid yet") || reason.contains("NotValidYet") {
                    "not valid yet"
                } else {
                    "not trusted"
                };
            let hint = if reason.contains("UnknownIssuer") {
                " (signed by an authority not in this system's root store; a private CA can be added with SSL_CERT_FILE)"
            } else {
                ""
            };
            return Some((problem, format!("{reason}{hint}")));
        }
        cause = e.source();
    }
    None
}

/// The server answered the TLS ClientHello with bytes that are no TLS
/// record (an HTTP server's `HTTP/1.1 400 ...`): rustls reports "corrupt
/// message of type InvalidContentType" (tokio-rustls hands it up inside an
/// `io::Error`, so it is found by its words, like the certificate's).
pub(super) fn answered_plain_http(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.to_string().contains("InvalidContentType") {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use crate::registry::RegistryError;

    #[tokio::test]
    async fn given_a_plain_http_server_when_asked_over_https_then_a_permanent_error_naming_it_and_the_flag(
    ) {
        // What any plain-HTTP registry answers to a TLS ClientHello.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut hello = [0u8; 512];
                let _ = conn.read(&mut hello);
                let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let url = format!("https://127.0.0.1:{port}/v2/");
        let e = reqwest::Client::new().get(&url).send().await.unwrap_err();

        let err = RegistryError::transport(format!("GET 127.0.0.1:{port}/v2/"), e);

        assert!(matches!(err, RegistryError::PlainHttp { .. }), "{err:?}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("plain HTTP") && text.contains("--plain-http-loopback"),
            "{text}"
        );
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
}
