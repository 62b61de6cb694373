use super::*;
use media::{AacConfig, AudioCodec, AvcConfig, VideoCodec};

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
const ASC: &[u8] = include_bytes!("../../../testdata/aac-48k-stereo.asc");

fn info() -> MediaInfo {
    MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::H264(
            AvcConfig::parse(Bytes::from_static(AVCC)).unwrap(),
        )),
        audio: Some(AudioCodec::Aac(
            AacConfig::parse(Bytes::from_static(ASC)).unwrap(),
        )),
        framerate: None,
    }
}

/// Video frame `n` of a 10-frame GOP: an IDR of 3 kB (FU-A) or a 500-byte P slice.
fn video(n: i64) -> Frame {
    let keyframe = n % 10 == 0;
    let mut nal = vec![if keyframe { 0x65 } else { 0x41 }];
    nal.extend((0..if keyframe { 2999 } else { 499 }).map(|i| (i as i64 * 7 + n) as u8));
    let mut payload = (nal.len() as u32).to_be_bytes().to_vec();
    payload.extend_from_slice(&nal);
    Frame {
        track: TrackKind::Video,
        dts: n * 3000,
        pts: n * 3000,
        keyframe,
        payload: Bytes::from(payload),
    }
}

fn audio(n: i64) -> Frame {
    Frame {
        track: TrackKind::Audio,
        dts: n * 3000 + 1,
        pts: n * 3000 + 1,
        keyframe: true,
        payload: Bytes::from(vec![n as u8; 300]),
    }
}

#[test]
fn a_frame_is_packetized_once_and_shared() {
    let share = SharedPacketizers::new(64, 1400);
    let info = Arc::new(info());
    let a = share.get("cam", &info);
    let b = share.get("cam", &info);
    assert!(
        Arc::ptr_eq(&a, &b),
        "one packetizer per stream and track set"
    );
    assert_eq!(share.len(), 1);

    let frame = video(0);
    let pa = a.packets(&frame).expect("packets");
    // The hub hands every reader a clone of the same frame.
    let pb = b.packets(&frame.clone()).expect("packets");
    assert!(Arc::ptr_eq(&pa, &pb));
    assert_eq!(a.packetized(), 1);
    // A frame with the same timestamps but another payload is another frame.
    let other = Frame {
        payload: Bytes::copy_from_slice(&frame.payload),
        ..frame.clone()
    };
    assert!(!Arc::ptr_eq(&pa, &a.packets(&other).expect("packets")));
    assert_eq!(a.packetized(), 2);

    drop((a, b));
    assert!(share.is_empty(), "the last reader frees the packetizer");
}

#[test]
fn the_cache_is_bounded_and_a_miss_packetizes_again() {
    let share = SharedPacketizers::new(16, 1400);
    let p = share.get("cam", &Arc::new(info()));
    let frames: Vec<Frame> = (0..40).map(video).collect();
    for f in &frames {
        p.packets(f);
    }
    assert_eq!(lock(&p.cache).len(), 16);
    assert_eq!(p.packetized(), 40);
    // The newest 16 are shared; an older one is packetized again, correctly.
    p.packets(&frames[39]);
    assert_eq!(p.packetized(), 40);
    let again = p.packets(&frames[0]).expect("packets");
    assert_eq!(p.packetized(), 41);
    assert_eq!(again.timestamp(), 0);
}

#[test]
fn tracks_without_an_rtp_mapping_and_malformed_frames_give_nothing() {
    let share = SharedPacketizers::new(16, 1400);
    let mut audio_only = info();
    audio_only.video = None;
    let p = share.get("cam", &Arc::new(audio_only));
    assert!(p.packets(&video(0)).is_none());
    assert!(p.packets(&audio(0)).is_some());
    let broken = Frame {
        payload: Bytes::from_static(&[0, 0, 0, 9, 0x41]),
        ..video(1)
    };
    let full = share.get("cam", &Arc::new(info()));
    assert!(full.packets(&broken).is_none());
    assert_eq!(share.len(), 2, "a track set each");
}

const HVCC: &[u8] = include_bytes!("../../../testdata/hevc-1280x720-main.hvcc");
const HEVC_IDR_FRAME: &[u8] = include_bytes!("../../../testdata/hevc-1280x720-idr.hvcc-frame");
const OPUS_HEAD: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.opushead");
const OPUS_HEAD_51: &[u8] = include_bytes!("../../../testdata/opus-48k-5.1.opushead");
const OPUS_PACKET: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.packet");
const AV1C: &[u8] = include_bytes!("../../../testdata/av1-640x360-main.av1c");

fn hevc_opus_info() -> MediaInfo {
    MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::H265(
            media::HevcConfig::parse(Bytes::from_static(HVCC)).unwrap(),
        )),
        audio: Some(AudioCodec::Opus(
            media::OpusConfig::parse(Bytes::from_static(OPUS_HEAD)).unwrap(),
        )),
        framerate: None,
    }
}

fn payload_type(packet: &crate::rtp::SharedPacket<'_>) -> u8 {
    packet.head()[crate::rtp::FRAMING_LEN + 1] & 0x7f
}

#[test]
fn h265_and_opus_streams_are_packetized_and_shared() {
    let share = SharedPacketizers::new(16, 1400);
    let info = Arc::new(hevc_opus_info());
    let a = share.get("hevc", &info);
    let b = share.get("hevc", &info);
    let idr = Frame {
        track: TrackKind::Video,
        dts: 0,
        pts: 3600,
        keyframe: true,
        payload: Bytes::from_static(HEVC_IDR_FRAME),
    };
    let video = a.packets(&idr).expect("H.265 packets");
    assert!(Arc::ptr_eq(&video, &b.packets(&idr.clone()).unwrap()));
    assert_eq!(video.timestamp(), 3600);
    // VPS, SPS and PPS, then the 22 kB IDR as 16 FUs of at most 1400 bytes.
    assert_eq!(
        video.len(),
        3 + (HEVC_IDR_FRAME.len() - 4 - 2).div_ceil(1397)
    );
    assert!(
        video
            .packets()
            .all(|p| payload_type(&p) == 96 && p.payload_len() <= 1400)
    );
    assert_eq!(video.packets().filter(|p| p.marker()).count(), 1);
    assert!(video.packets().last().unwrap().marker());

    let opus = Frame {
        track: TrackKind::Audio,
        dts: 1800,
        pts: 1800,
        keyframe: true,
        payload: Bytes::from_static(OPUS_PACKET),
    };
    let audio = b.packets(&opus).expect("Opus packet");
    assert_eq!(audio.timestamp(), 960, "48 kHz clock");
    assert_eq!(audio.len(), 1);
    let packet = audio.packets().next().unwrap();
    assert_eq!(payload_type(&packet), 97);
    assert_eq!(packet.body().as_ref(), OPUS_PACKET);
    assert_eq!(a.packetized(), 2);
}

#[test]
fn multistream_opus_has_no_rtp_mapping_and_av1_is_packetized() {
    let share = SharedPacketizers::new(16, 1400);
    let info = MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::Av1(
            media::Av1Config::parse(Bytes::from_static(AV1C)).unwrap(),
        )),
        audio: Some(AudioCodec::Opus(
            media::OpusConfig::parse(Bytes::from_static(OPUS_HEAD_51)).unwrap(),
        )),
        framerate: None,
    };
    let p = share.get("av1", &Arc::new(info));
    assert!(p.packets(&audio(0)).is_none());
    let key = Frame {
        track: TrackKind::Video,
        dts: 0,
        pts: 0,
        keyframe: true,
        payload: Bytes::from_static(include_bytes!("../../../testdata/av1-640x360-key.obus")),
    };
    assert!(p.packets(&key).is_some_and(|f| !f.is_empty()));
}

#[cfg(feature = "server")]
mod with_hub {
    use super::*;
    use crate::out::OutQueue;
    use crate::rtp::RtpSender;
    use hub::{Event, Hub, HubConfig, PublisherMeta, ReaderMeta, Subscription};

    /// A parsed interleaved RTP packet.
    #[derive(Debug)]
    struct Packet {
        channel: u8,
        marker: bool,
        seq: u16,
        ts: u32,
        ssrc: u32,
        payload: Vec<u8>,
    }

    fn parse_interleaved(mut data: &[u8]) -> Vec<Packet> {
        let mut out = Vec::new();
        while !data.is_empty() {
            assert_eq!(data[0], b'$');
            let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
            let rtp = &data[4..4 + len];
            assert_eq!(rtp[0], 0x80);
            out.push(Packet {
                channel: data[1],
                marker: rtp[1] & 0x80 != 0,
                seq: u16::from_be_bytes([rtp[2], rtp[3]]),
                ts: u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]),
                ssrc: u32::from_be_bytes([rtp[8], rtp[9], rtp[10], rtp[11]]),
                payload: rtp[12..].to_vec(),
            });
            data = &data[4 + len..];
        }
        out
    }

    fn assert_contiguous(packets: &[&Packet], what: &str) {
        for w in packets.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "{what}: sequence gap");
        }
    }

    /// A reader as `conn` plays one: its hub subscription, the shared packetizer of the
    /// current track set, its own senders, its TCP output queue.
    struct Reader {
        sub: Subscription,
        packets: Option<Arc<StreamPacketizer>>,
        video: RtpSender,
        audio: RtpSender,
        out: OutQueue,
    }

    impl Reader {
        fn new(hub: &Hub, ssrc: u32, seq: u16, ts_offset: u32) -> Reader {
            let meta = ReaderMeta {
                protocol: "rtsp",
                remote_addr: None,
                client: None,
                args: Vec::new(),
            };
            Reader {
                sub: hub.subscribe_live("cam", meta).expect("live"),
                packets: None,
                video: RtpSender::new(ssrc, seq, ts_offset).with_channel(0),
                audio: RtpSender::new(ssrc ^ 1, seq, ts_offset).with_channel(2),
                out: OutQueue::new(),
            }
        }

        /// Handles every event the hub has for this reader now.
        fn pump(&mut self, share: &SharedPacketizers) {
            while let Some(ev) = self.sub.try_recv() {
                match ev {
                    Event::Tracks { info, .. } => self.packets = Some(share.get("cam", &info)),
                    Event::Frame(f) => {
                        let rtp = self.packets.as_ref().unwrap().packets(&f).unwrap();
                        let sender = match f.track {
                            TrackKind::Video => &mut self.video,
                            TrackKind::Audio => &mut self.audio,
                        };
                        for p in rtp.packets() {
                            self.out.push_rtp(sender, p);
                        }
                    }
                    Event::End => self.packets = None,
                }
            }
        }

        fn received(&self) -> Vec<Packet> {
            parse_interleaved(&self.out.to_vec())
        }
    }

    fn write_gop(publisher: &hub::Publisher, gop: i64, mut after_each: impl FnMut()) {
        for n in gop * 10..gop * 10 + 10 {
            publisher.write(video(n));
            after_each();
            publisher.write(audio(n));
            after_each();
        }
    }

    #[test]
    fn shared_packets_give_each_reader_its_own_stream_and_a_slow_one_skips_to_a_keyframe() {
        let hub = Hub::new(HubConfig {
            reader_queue_frames: 16,
            ..HubConfig::default()
        });
        let publisher = hub
            .publish("cam", PublisherMeta::default())
            .expect("publish");
        publisher.announce(info());
        let share = SharedPacketizers::new(hub.config().reader_queue_frames, 1400);
        let mut fast = Reader::new(&hub, 0x1111_0000, 65_530, 0);
        let mut slow = Reader::new(&hub, 0x2222_0000, 100, 0x8000_0000);

        // Three GOPs: the fast reader keeps up, the slow one reads nothing and overflows its
        // 16-frame queue.
        for gop in 0..3 {
            write_gop(&publisher, gop, || fast.pump(&share));
        }
        slow.pump(&share);
        assert!(slow.sub.dropped() > 0, "the slow reader lost frames");
        assert!(
            slow.out.is_empty(),
            "nothing decodable before the next keyframe"
        );
        // The fourth GOP reaches both.
        write_gop(&publisher, 3, || {
            fast.pump(&share);
            slow.pump(&share);
        });

        let fast_rx = fast.received();
        let slow_rx = slow.received();
        for (rx, ssrc, name) in [
            (&fast_rx, 0x1111_0000, "fast"),
            (&slow_rx, 0x2222_0000, "slow"),
        ] {
            let video: Vec<&Packet> = rx.iter().filter(|p| p.channel == 0).collect();
            let audio: Vec<&Packet> = rx.iter().filter(|p| p.channel == 2).collect();
            assert_contiguous(&video, name);
            assert_contiguous(&audio, name);
            assert!(
                video.iter().all(|p| p.ssrc == ssrc),
                "{name}: own video SSRC"
            );
            assert!(
                audio.iter().all(|p| p.ssrc == ssrc ^ 1),
                "{name}: own audio SSRC"
            );
        }
        let video_aus = |rx: &[Packet]| rx.iter().filter(|p| p.channel == 0 && p.marker).count();
        assert_eq!(video_aus(&fast_rx), 40, "the fast reader got every frame");
        assert_eq!(video_aus(&slow_rx), 10, "the slow reader resumed at GOP 4");
        assert_eq!(fast_rx[0].seq, 65_530);
        assert_eq!(
            slow_rx[0].seq, 100,
            "no sequence numbers spent on skipped frames"
        );
        // The slow reader's first packet starts the keyframe: the configuration's SPS.
        assert_eq!(slow_rx[0].payload[0] & 0x1f, 7);

        // GOP 4 as both received it: the same payload, the timestamp shifted by the offsets.
        let gop4: Vec<&Packet> = fast_rx
            .iter()
            .filter(|p| p.channel == 0)
            .skip_while(|p| p.ts != 90_000)
            .collect();
        let slow_video: Vec<&Packet> = slow_rx.iter().filter(|p| p.channel == 0).collect();
        assert_eq!(gop4.len(), slow_video.len());
        for (f, s) in gop4.iter().zip(&slow_video) {
            assert_eq!(f.payload, s.payload);
            assert_eq!(s.ts, f.ts.wrapping_add(0x8000_0000));
        }
        // And the bodies are the same allocations, not copies.
        let fast_bodies: Vec<*const u8> = fast.out.bodies().map(|b| b.as_ptr()).collect();
        let slow_bodies: Vec<*const u8> = slow.out.bodies().map(|b| b.as_ptr()).collect();
        assert!(!slow_bodies.is_empty());
        assert!(slow_bodies.iter().all(|p| fast_bodies.contains(p)));
        let shared = fast.packets.clone().expect("packetizer");
        assert_eq!(
            shared.packetized(),
            80,
            "each frame packetized once for two readers"
        );

        drop(shared);
        drop((fast, slow));
        assert!(share.is_empty(), "gone with the last reader");
    }

    #[test]
    fn a_new_track_set_gets_its_own_packetizer_and_frees_the_old_one() {
        let hub = Hub::new(HubConfig::default());
        let publisher = hub
            .publish("cam", PublisherMeta::default())
            .expect("publish");
        publisher.announce(info());
        let share = SharedPacketizers::new(64, 1400);
        let mut a = Reader::new(&hub, 1, 0, 0);
        let mut b = Reader::new(&hub, 2, 0, 0);
        write_gop(&publisher, 0, || {
            a.pump(&share);
            b.pump(&share);
        });
        let first = a.packets.clone().expect("packetizer");
        assert_eq!(share.len(), 1);

        // A new configuration (the same tracks again would be no news to readers): readers
        // move to a new packetizer as they reach it.
        publisher.announce(MediaInfo {
            framerate: Some(25.0),
            ..info()
        });
        a.pump(&share);
        assert_eq!(share.len(), 2, "b still plays the old track set");
        assert!(!Arc::ptr_eq(
            &first,
            a.packets.as_ref().expect("packetizer")
        ));
        b.pump(&share);
        drop(first);
        assert_eq!(share.len(), 1, "the old one went with its last reader");
        write_gop(&publisher, 1, || {
            a.pump(&share);
            b.pump(&share);
        });
        let video = |r: &Reader| -> Vec<u16> {
            r.received()
                .iter()
                .filter(|p| p.channel == 0)
                .map(|p| p.seq)
                .collect()
        };
        // Sequence numbers run on across the change.
        let seqs = video(&a);
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        assert_eq!(video(&a), video(&b));
    }
}
