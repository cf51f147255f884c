//! Gets a few IDs from the server at KESTREL_URL (default redis://127.0.0.1:6379).

use kestrel_client::{Config, Kestrel};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kestrel_client::Error> {
    let url = std::env::var("KESTREL_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let kestrel = Kestrel::connect(Config::builder().url(url).build()?).await?;
    let id = kestrel.get_id().await?;
    let ids = kestrel.get_ids(10_000).await?;
    println!("{id} {} {:?}", ids.len(), kestrel.plan().await?);
    Ok(())
}
