//! Where the mapping config comes from (SSM Parameter Store, or inline for
//! local runs), cached across invocations for a TTL so a warm Lambda does
//! not call SSM per event, yet picks up edits within a minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecr_bridge::mapping::{ConfigError, MappingConfig};
use tokio::sync::Mutex;

use crate::error::AwsError;

pub enum MappingSource {
    Inline(String),
    Parameter {
        ssm: aws_sdk_ssm::Client,
        name: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("mapping config ({origin}) is invalid: {source}")]
    Invalid {
        origin: String,
        #[source]
        source: ConfigError,
    },
    #[error("mapping config parameter {name} does not exist")]
    ParameterMissing { name: String },
    #[error("reading mapping config: {0}")]
    Aws(#[from] AwsError),
}

impl MappingError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, MappingError::Aws(e) if e.retryable)
    }
}

pub struct MappingStore {
    source: MappingSource,
    ttl: Duration,
    /// When read, the config and the document's digest.
    cached: Mutex<Option<(Instant, Arc<MappingConfig>, String)>>,
}

impl MappingStore {
    pub fn new(source: MappingSource, ttl: Duration) -> Self {
        MappingStore {
            source,
            ttl,
            cached: Mutex::new(None),
        }
    }

    fn origin(&self) -> String {
        match &self.source {
            MappingSource::Inline(_) => "MAPPING_JSON".to_string(),
            MappingSource::Parameter { name, .. } => format!("SSM parameter {name}"),
        }
    }

    /// The current config: cached while younger than the TTL.
    pub async fn get(&self) -> Result<Arc<MappingConfig>, MappingError> {
        Ok(self.current().await?.0)
    }

    /// The current config and the digest of its document (`sha256:…`),
    /// which tells whether two backfills ran under the same mapping.
    pub async fn current(&self) -> Result<(Arc<MappingConfig>, String), MappingError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, config, digest)) = cached.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok((config.clone(), digest.clone()));
            }
        }
        let text = self.read().await?;
        let config =
            Arc::new(
                MappingConfig::from_json(&text).map_err(|source| MappingError::Invalid {
                    origin: self.origin(),
                    source,
                })?,
            );
        let digest = ecr_bridge::Digest::sha256_of(text.as_bytes()).to_string();
        *cached = Some((Instant::now(), config.clone(), digest.clone()));
        Ok((config, digest))
    }

    async fn read(&self) -> Result<String, MappingError> {
        match &self.source {
            MappingSource::Inline(text) => Ok(text.clone()),
            MappingSource::Parameter { ssm, name } => {
                let out = ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| {
                        let e = AwsError::from_sdk("ssm:GetParameter", e);
                        if e.has_code("ParameterNotFound") {
                            MappingError::ParameterMissing { name: name.clone() }
                        } else {
                            MappingError::Aws(e)
                        }
                    })?;
                Ok(out
                    .parameter()
                    .and_then(|p| p.value())
                    .unwrap_or_default()
                    .to_string())
            }
        }
    }
}
