//! Times planning and updating for two config files (not part of the build's tests).
use std::time::Instant;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let old = router_config::parse_and_validate(&std::fs::read(&a[1]).unwrap()).unwrap();
    let new = router_config::parse_and_validate(&std::fs::read(&a[2]).unwrap()).unwrap();
    let t = Instant::now();
    let mut rs = render::plan(&old);
    eprintln!("plan {:?}", t.elapsed());
    let t = Instant::now();
    let u = rs.update(&old, &new);
    eprintln!("update {:?} ({} bytes)", t.elapsed(), u.script.len());
}
