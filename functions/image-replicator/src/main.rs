//! Lambda entry point: configuration and clients built once, then the runtime loop.

use image_replicator::{config::Config, handler};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    ecr_bridge_aws::logging::init_lambda();
    let config = Config::from_env(&ecr_bridge_aws::env::ProcessEnv)?;
    let replicator = config.build().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deadline = ecr_bridge_aws::deadline::invocation_deadline(event.context.deadline);
        ecr_bridge_aws::emf::in_invocation(
            event.context.request_id,
            handler::handle_until(&replicator, &config, event.payload, deadline),
        )
    }))
    .await
}
