//! Why a connection could not be made, read out of a transport error's
//! chain, so that the message names the cause: nothing listening (a wrong
//! port, a registry down), a host name that does not exist (a typo: final),
//! or a resolver that did not answer (worth a retry).

/// What stopped the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectCause {
    /// The host answered: nothing listens on that port.
    Refused,
    /// DNS says the name does not exist (getaddrinfo's EAI_NONAME).
    UnknownHost,
    /// DNS did not answer, or failed for now (EAI_AGAIN and the rest).
    DnsFailed,
    /// Anything else (unreachable network, reset during the handshake...).
    Other,
}

pub(super) fn connect_cause(error: &reqwest::Error) -> ConnectCause {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut dns = false;
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return ConnectCause::Refused;
            }
        }
        let text = e.to_string();
        // glibc's and musl's words for a name that does not exist.
        if text.contains("Name or service not known")
            || text.contains("No address associated with hostname")
            || text.contains("nodename nor servname provided")
        {
            return ConnectCause::UnknownHost;
        }
        dns |= text.contains("dns error") || text.contains("failed to lookup address");
        cause = e.source();
    }
    if dns {
        ConnectCause::DnsFailed
    } else {
        ConnectCause::Other
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::RegistryError;

    async fn failure(url: &str) -> RegistryError {
        let e = reqwest::Client::new().get(url).send().await.unwrap_err();
        RegistryError::transport(format!("GET {url}"), e)
    }

    #[tokio::test]
    async fn given_a_port_nothing_listens_on_when_asked_then_the_refusal_is_named_and_retryable() {
        // A port just freed: the host answers with a refusal.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();

        let err = failure(&format!("http://127.0.0.1:{port}/v2/")).await;

        assert!(
            err.to_string().contains("connection refused by 127.0.0.1:"),
            "{err}"
        );
        assert!(err.to_string().contains("nothing listens"), "{err}");
        assert!(
            err.is_retryable(),
            "a registry restarting comes back: {err}"
        );
    }

    #[tokio::test]
    async fn given_a_host_name_that_cannot_exist_when_asked_then_dns_and_the_host_are_named() {
        // `.invalid` never resolves (RFC 2606).
        let err = failure("http://registry.example.invalid/v2/").await;

        let message = err.to_string();
        assert!(message.contains("registry.example.invalid"), "{message}");
        assert!(message.contains("DNS"), "{message}");
        // A resolver that answers says the name does not exist: final. One
        // that cannot be reached (a machine without DNS) fails for now.
        if matches!(err, RegistryError::UnknownHost { .. }) {
            assert!(!err.is_retryable(), "{message}");
            assert!(message.contains("check the registry address"), "{message}");
        } else {
            assert!(err.is_retryable(), "{message}");
        }
    }
}
