use super::*;
use std::time::Duration;

#[test]
fn ntp_epoch_conversion() {
    assert_eq!(ntp_timestamp(UNIX_EPOCH), 2_208_988_800u64 << 32);
    // Half a second is exactly 2^31 in the fraction.
    let t = UNIX_EPOCH + Duration::from_millis(1_500);
    assert_eq!(ntp_timestamp(t), ((2_208_988_801u64) << 32) | 0x8000_0000);
    // 2026-11-21T00:00:00Z = 1_795_219_200 Unix seconds.
    let t = UNIX_EPOCH + Duration::from_secs(1_795_219_200);
    assert_eq!(ntp_timestamp(t) >> 32, 1_795_219_200 + 2_208_988_800);
    // Before 1970 and before 1900.
    let t = UNIX_EPOCH - Duration::from_secs(2_208_988_800 - 10);
    assert_eq!(ntp_timestamp(t), 10u64 << 32);
    let t = UNIX_EPOCH - Duration::from_secs(2_208_988_800 + 10);
    assert_eq!(ntp_timestamp(t), 0);
    // 2036-02-07T06:28:16Z starts NTP era 1: seconds wrap to 0.
    let t = UNIX_EPOCH + Duration::from_secs((1u64 << 32) - 2_208_988_800 + 3);
    assert_eq!(ntp_timestamp(t), 3u64 << 32);
}

#[test]
fn sender_report_layout() {
    let sr = SenderReport {
        ssrc: 0xdead_beef,
        ntp_time: UNIX_EPOCH + Duration::from_millis(1_250),
        rtp_timestamp: 0x0102_0304,
        packet_count: 5,
        octet_count: 0x0a0b_0c0d,
    };
    let bytes = sr.to_bytes("ferrocast");
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // SR header: V=2 P=0 RC=0, PT=200, length 6 (28 bytes).
        0x80, 200, 0, 6,
        0xde, 0xad, 0xbe, 0xef,
        // NTP: 2_208_988_801 = 0x83aa7e81 seconds, 0.25 s = 0x40000000.
        0x83, 0xaa, 0x7e, 0x81, 0x40, 0, 0, 0,
        1, 2, 3, 4,
        0, 0, 0, 5,
        0x0a, 0x0b, 0x0c, 0x0d,
        // SDES: V=2 P=0 SC=1, PT=202, length 4 (20 bytes).
        0x81, 202, 0, 4,
        0xde, 0xad, 0xbe, 0xef,
        // CNAME item, 9 bytes of text, then one null octet ends the list and pads to 32 bits.
        1, 9, b'f', b'e', b'r', b'r', b'o', b'c', b'a', b's', b't', 0,
    ];
    assert_eq!(bytes.as_ref(), expected);
}

#[test]
fn sdes_padding_and_long_cname() {
    for len in 0..12 {
        let cname = "x".repeat(len);
        let bytes = SenderReport {
            ssrc: 1,
            ntp_time: UNIX_EPOCH,
            rtp_timestamp: 0,
            packet_count: 0,
            octet_count: 0,
        }
        .to_bytes(&cname);
        let sdes = &bytes[28..];
        assert_eq!(sdes.len() % 4, 0);
        let words = u16::from_be_bytes([sdes[2], sdes[3]]) as usize;
        assert_eq!((words + 1) * 4, sdes.len());
        // At least one null octet after the item.
        assert!(sdes.len() > 8 + 2 + len);
        assert!(sdes[10 + len..].iter().all(|&b| b == 0));
    }
    // 300 bytes with a multi-byte char straddling the 255 cut.
    let cname = format!("{}é{}", "a".repeat(254), "b".repeat(44));
    let bytes = SenderReport {
        ssrc: 1,
        ntp_time: UNIX_EPOCH,
        rtp_timestamp: 0,
        packet_count: 0,
        octet_count: 0,
    }
    .to_bytes(&cname);
    assert_eq!(bytes[28 + 9], 254, "cut before the 2-byte char");
    assert_eq!(bytes.len() % 4, 0);
}

#[test]
fn media_clock_waits_for_a_frame() {
    let t0 = Instant::now();
    let mut clock = MediaClock::new(t0, SystemTime::UNIX_EPOCH);
    assert_eq!(clock.at(t0 + Duration::from_secs(1)), None);
}

/// A GOP-cache burst followed by live frames: reports advance exactly with wall-clock time,
/// whatever the frames sent between them, and the mapping is the one fixed at the first.
#[test]
fn media_clock_advances_with_wall_time_only() {
    let t0 = Instant::now();
    let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let mut clock = MediaClock::new(t0, wall0);
    // Two seconds of cached frames sent at once, 100 ms after start.
    let burst = t0 + Duration::from_millis(100);
    for pts in (0..=180_000).step_by(3_000) {
        clock.observe(1_000_000 + pts, burst);
    }
    let (wall1, m1) = clock.at(burst).expect("frames seen");
    assert_eq!(wall1, wall0 + Duration::from_millis(100));
    assert_eq!(m1, 1_180_000);
    // Live frames, and one that arrives early (a lead larger than before).
    clock.observe(1_183_000, burst + Duration::from_millis(33));
    clock.observe(1_300_000, burst + Duration::from_millis(40));
    let (wall2, m2) = clock
        .at(burst + Duration::from_secs(5))
        .expect("frames seen");
    assert_eq!(wall2, wall1 + Duration::from_secs(5));
    assert_eq!(m2 - m1, 5 * 90_000);
}
