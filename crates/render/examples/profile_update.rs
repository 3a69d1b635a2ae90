//! Times planning a config and updating its model to a second config:
//! `cargo run --release -p render --example profile_update OLD.json NEW.json`.
//! `guestnet-bench config` writes such files.
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [old, new] = args.as_slice() else {
        return Err("usage: profile_update OLD.json NEW.json".into());
    };
    let old = router_config::parse_and_validate(&std::fs::read(old)?)?;
    let new = router_config::parse_and_validate(&std::fs::read(new)?)?;
    let started = Instant::now();
    let mut model = render::plan(&old);
    eprintln!("plan {:?}", started.elapsed());
    let started = Instant::now();
    let update = model.update(&old, &new);
    eprintln!(
        "update {:?} ({} bytes of script)",
        started.elapsed(),
        update.script.len()
    );
    Ok(())
}
