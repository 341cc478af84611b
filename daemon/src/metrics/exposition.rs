//! Writing an exposition in bounded chunks.
//!
//! A fleet of 10,000 sirens makes an exposition of several megabytes. Built in one buffer at
//! every scrape, that buffer was the largest allocation the daemon made and the allocator kept
//! its pages resident after it was freed. Here the encoders write into a [`ChunkWriter`],
//! which hands on complete lines in chunks of about [`CHUNK`] bytes, converted to the classic
//! text format on the way when the scraper asked for it.

use std::fmt;

use bytes::Bytes;

/// The size at which a chunk is handed on. Below glibc's initial mmap threshold (128 KiB), so
/// chunks come from the heap and their memory is reused by the next chunk.
pub(super) const CHUNK: usize = 32 * 1024;

/// The text format of an exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0, what Prometheus asks for.
    OpenMetrics,
    /// The classic Prometheus text format (0.0.4), for everyone else (`promtool`, curl).
    Classic,
}

/// Where finished chunks go; an error stops the encoding (the scraper went away).
pub trait ChunkSink {
    fn send(&mut self, chunk: Bytes) -> fmt::Result;
}

/// Collects the chunks into one string: for tests and in-process readers.
impl ChunkSink for String {
    fn send(&mut self, chunk: Bytes) -> fmt::Result {
        self.push_str(std::str::from_utf8(&chunk).map_err(|_| fmt::Error)?);
        Ok(())
    }
}

/// Hands chunks to the HTTP response body; blocks while the scraper is a chunk or two behind,
/// which is why it is used from a blocking thread and never while a lock is held.
impl ChunkSink for tokio::sync::mpsc::Sender<Bytes> {
    fn send(&mut self, chunk: Bytes) -> fmt::Result {
        self.blocking_send(chunk).map_err(|_| fmt::Error)
    }
}

/// A `fmt::Write` that passes on complete lines in chunks of about [`CHUNK`] bytes.
#[derive(Debug)]
pub(super) struct ChunkWriter<S> {
    sink: S,
    buf: String,
    classic: Option<Classic>,
}

impl<S: ChunkSink> ChunkWriter<S> {
    pub(super) fn new(sink: S, format: Format) -> Self {
        Self {
            sink,
            buf: String::with_capacity(CHUNK + CHUNK / 4),
            classic: (format == Format::Classic).then(Classic::default),
        }
    }

    /// Sends what is left and returns the sink.
    pub(super) fn finish(mut self) -> Result<S, fmt::Error> {
        let rest = std::mem::take(&mut self.buf);
        self.pass_on(&rest)?;
        if let Some(c) = &mut self.classic {
            let mut tail = String::new();
            c.finish(&mut tail);
            if !tail.is_empty() {
                self.sink.send(Bytes::from(tail))?;
            }
        }
        Ok(self.sink)
    }

    fn pass_on(&mut self, lines: &str) -> fmt::Result {
        if lines.is_empty() {
            return Ok(());
        }
        let chunk = match &mut self.classic {
            Some(c) => {
                let mut out = String::with_capacity(lines.len() + 64);
                for line in lines.lines() {
                    c.line(line, &mut out);
                }
                out
            }
            None => lines.to_owned(),
        };
        if chunk.is_empty() { Ok(()) } else { self.sink.send(Bytes::from(chunk)) }
    }
}

impl<S: ChunkSink> fmt::Write for ChunkWriter<S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.buf.push_str(s);
        if self.buf.len() >= CHUNK {
            // Only whole lines: the classic conversion works line by line.
            if let Some(end) = self.buf.rfind('\n') {
                let rest = self.buf.split_off(end + 1);
                let lines = std::mem::replace(&mut self.buf, rest);
                self.pass_on(&lines)?;
            }
        }
        Ok(())
    }
}

/// Converts OpenMetrics text to the classic format line by line: a counter family is named
/// with its `_total` suffix in HELP and TYPE, and the OpenMetrics-only `# UNIT` and `# EOF`
/// lines go. A family's HELP line comes before its TYPE line, so it waits for it.
#[derive(Debug, Default)]
struct Classic {
    help: Option<String>,
}

impl Classic {
    fn line(&mut self, line: &str, out: &mut String) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            self.finish(out);
            self.help = Some(rest.to_owned());
            return;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(help) = self.help.take() {
                let (help_name, text) = help.split_once(' ').unwrap_or((help.as_str(), ""));
                let help_suffix = if help_name == name { suffix } else { "" };
                push_line(out, &["# HELP ", help_name, help_suffix, " ", text]);
            }
            push_line(out, &["# TYPE ", name, suffix, " ", kind]);
            return;
        }
        self.finish(out);
        if line.starts_with("# UNIT ") || line == "# EOF" {
            return;
        }
        push_line(out, &[line]);
    }

    /// A HELP line not followed by its TYPE line is written as it was.
    fn finish(&mut self, out: &mut String) {
        if let Some(help) = self.help.take() {
            push_line(out, &["# HELP ", &help]);
        }
    }
}

fn push_line(out: &mut String, parts: &[&str]) {
    for p in parts {
        out.push_str(p);
    }
    out.push('\n');
}

/// Converts a whole OpenMetrics exposition to the classic text format.
pub fn to_classic(openmetrics: &str) -> String {
    let mut w = ChunkWriter::new(String::new(), Format::Classic);
    // Neither writing to a String nor converting UTF-8 text can fail.
    let _ = fmt::Write::write_str(&mut w, openmetrics);
    w.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    const OPENMETRICS: &str = "# HELP siren_link_polls Polls sent on the link\n\
        # TYPE siren_link_polls counter\n\
        siren_link_polls_total{link=\"serial:a\"} 3\n\
        # HELP siren_battery_volts Battery voltage\n\
        # TYPE siren_battery_volts gauge\n\
        # UNIT siren_battery_volts volts\n\
        siren_battery_volts{siren=\"A\"} 12.5\n\
        # EOF\n";

    #[test]
    fn classic_names_counters_with_total_and_drops_openmetrics_lines() {
        assert_eq!(
            to_classic(OPENMETRICS),
            "# HELP siren_link_polls_total Polls sent on the link\n\
             # TYPE siren_link_polls_total counter\n\
             siren_link_polls_total{link=\"serial:a\"} 3\n\
             # HELP siren_battery_volts Battery voltage\n\
             # TYPE siren_battery_volts gauge\n\
             siren_battery_volts{siren=\"A\"} 12.5\n"
        );
    }

    /// Records the size of every chunk it is given.
    #[derive(Default)]
    struct Sizes(Vec<usize>, String);

    impl ChunkSink for Sizes {
        fn send(&mut self, chunk: Bytes) -> fmt::Result {
            self.0.push(chunk.len());
            self.1.push_str(std::str::from_utf8(&chunk).map_err(|_| fmt::Error)?);
            Ok(())
        }
    }

    fn big_exposition(lines: usize) -> String {
        let mut text = String::from("# HELP siren_state State\n# TYPE siren_state gauge\n");
        for i in 0..lines {
            let _ = writeln!(text, "siren_state{{siren=\"S-{i:05}\",zone=\"hz/c\",state=\"ok\"}} 1");
        }
        text.push_str("# EOF\n");
        text
    }

    #[test]
    fn chunks_are_bounded_whole_lines_and_add_up_to_the_exposition() {
        let text = big_exposition(20_000);
        for format in [Format::OpenMetrics, Format::Classic] {
            let mut w = ChunkWriter::new(Sizes::default(), format);
            // Written in pieces the size the encoders write (labels, values, newlines).
            for piece in text.split_inclusive(['"', '\n']) {
                w.write_str(piece).unwrap();
            }
            let Sizes(sizes, joined) = w.finish().unwrap();
            assert!(sizes.len() > 10, "{} chunks", sizes.len());
            assert!(sizes.iter().all(|&n| n <= CHUNK + 200), "a chunk over the bound: {sizes:?}");
            let expected = if format == Format::Classic { to_classic(&text) } else { text.clone() };
            assert_eq!(joined, expected);
            assert!(joined.split_inclusive('\n').all(|l| l.ends_with('\n')));
        }
    }

    #[test]
    fn a_sink_that_fails_stops_the_writer() {
        struct Gone;
        impl ChunkSink for Gone {
            fn send(&mut self, _: Bytes) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        let mut w = ChunkWriter::new(Gone, Format::OpenMetrics);
        assert!(w.write_str(&big_exposition(2_000)).is_err());
    }
}
