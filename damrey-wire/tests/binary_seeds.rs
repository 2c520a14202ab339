//! The fuzz targets' binary seeds (`fuzz/seeds/{frame,peer_frame}/bin_*`) are frames as
//! Damrey writes them: each reads whole, so the fuzzer starts from valid messages.

use std::path::Path;

use damrey_wire::binary::LinkFrame;
use damrey_wire::frame::Frame;
use damrey_wire::peer::PeerFrame;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("bin_")
        })
        .map(|path| (path.display().to_string(), std::fs::read(&path).unwrap()))
        .collect();
    seeds.sort();
    seeds
}

fn every_seed_reads<F: LinkFrame + std::fmt::Debug>(target: &str) {
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "no binary seeds for {target}");
    for (path, bytes) in seeds {
        let frames: Result<Vec<F>, _> = F::from_binary(&bytes).collect();
        let frames = frames.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(!frames.is_empty(), "{path}");
    }
}

#[test]
fn the_worker_link_seeds_read() {
    every_seed_reads::<Frame>("frame");
}

#[test]
fn the_peer_link_seeds_read() {
    every_seed_reads::<PeerFrame>("peer_frame");
}
