//! netpair, run quickly: every configuration moves data both ways, and neither the NIC model
//! (transmit) nor the guest (receive) sees a single invalid frame. Speed is not checked here
//! (that is what the binary's table is for).

use pvio_examples::netpair::{self, Options, Pages, CONFIGS};

#[test]
fn every_configuration_moves_valid_data_both_ways() {
    let opts = Options {
        seconds: if cfg!(debug_assertions) { 0.25 } else { 0.1 },
        repeats: 1,
        only: Vec::new(),
        progress: false,
    };
    let rows = netpair::run(&opts).expect("netpair runs");
    print!("{}", netpair::table(&rows));
    assert_eq!(rows.len(), CONFIGS.len());
    for r in &rows {
        let name = r.config.name;
        if let Some(why) = &r.skipped {
            assert_eq!(r.config.pages, Pages::Huge, "{name} skipped: {why}");
            println!("skipped: {name}: {why}");
            continue;
        }
        for (dir, p) in [("tx", &r.tx), ("rx", &r.rx)] {
            assert!(p.bytes > 0 && p.packets > 0, "{name} {dir} moved no data: {p:?}");
            assert_eq!(p.invalid, 0, "{name} {dir}: invalid frames, first: {:?}", p.first_invalid);
            assert!(p.events > 0, "{name} {dir}: no notification was ever sent");
        }
        // A receive gap is only acceptable where the back end dropped (and counted) frames.
        assert!(r.rx.gaps <= r.rx.drops, "{name}: {} sequence gaps but {} drops", r.rx.gaps, r.rx.drops);
    }
    let svg = netpair::svg(&rows);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<rect").count(), 2 * rows.iter().filter(|r| r.skipped.is_none()).count() + 2);
}
