//! Reading CAP feeds, sans-IO: the CAP documents an Atom or RSS index links to, and how long
//! to wait before the next poll after successes and failures.

use std::time::Duration;

use quick_xml::events::Event;

/// The CAP documents an index links to, in its order: each Atom entry's
/// `<link type="application/cap+xml">` (else its `rel="alternate"` or plain link), each RSS
/// item's `<link>`. Relative links are resolved against `base`.
pub fn cap_links(index: &str, base: &str) -> Result<Vec<String>, String> {
    let mut reader = quick_xml::Reader::from_str(index);
    let mut links = Vec::new();
    // Inside an entry or item: its candidate links (CAP typed first), and RSS link text.
    let mut entry: Option<(Option<String>, Option<String>)> = None;
    let mut in_rss_link = false;
    let mut root = None;
    loop {
        match reader.read_event().map_err(|e| format!("not an Atom or RSS index: {e}"))? {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name();
                let name = std::str::from_utf8(name.as_ref()).unwrap_or_default().to_owned();
                root.get_or_insert_with(|| name.clone());
                match name.as_str() {
                    "entry" | "item" => entry = Some((None, None)),
                    "link" if entry.is_some() => {
                        let attr = |key: &str| {
                            e.attributes()
                                .flatten()
                                .find(|a| a.key.local_name().as_ref() == key.as_bytes())
                                .and_then(|a| a.unescape_value().ok().map(std::borrow::Cow::into_owned))
                        };
                        match attr("href") {
                            Some(href) => {
                                let (cap, other) = entry.as_mut().expect("inside an entry");
                                let typed = attr("type").is_some_and(|t| t.contains("cap+xml"));
                                let alternate = attr("rel").is_none_or(|r| r == "alternate");
                                if typed {
                                    cap.get_or_insert(href);
                                } else if alternate {
                                    other.get_or_insert(href);
                                }
                            }
                            None => in_rss_link = true,
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_rss_link => {
                let text = t.decode().map_err(|e| format!("a link: {e}"))?;
                if let Some((_, other)) = entry.as_mut() {
                    other.get_or_insert_with(String::new).push_str(text.trim());
                }
            }
            // `&amp;` in a link's text comes apart from the text around it.
            Event::GeneralRef(r) if in_rss_link => {
                let name: &[u8] = r.as_ref();
                let c = match name {
                    b"amp" => '&',
                    b"lt" => '<',
                    b"gt" => '>',
                    b"quot" => '"',
                    b"apos" => '\'',
                    _ => return Err("a link holds an unknown entity".into()),
                };
                if let Some((_, other)) = entry.as_mut() {
                    other.get_or_insert_with(String::new).push(c);
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                match name.as_ref() {
                    b"link" => in_rss_link = false,
                    b"entry" | b"item" => {
                        if let Some(link) = entry.take().and_then(|(cap, other)| cap.or(other)) {
                            links.push(resolve(base, &link));
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match root.as_deref() {
        Some("feed" | "rss" | "RDF") => Ok(links),
        Some(other) => Err(format!("not an Atom or RSS index: its root is <{other}>")),
        None => Err("not an Atom or RSS index: empty".into()),
    }
}

/// `link` resolved against the index's URL `base`.
fn resolve(base: &str, link: &str) -> String {
    if link.contains("://") {
        return link.to_owned();
    }
    let origin_end = base.find("://").and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j)).unwrap_or(base.len());
    if link.starts_with('/') {
        return format!("{}{link}", &base[..origin_end]);
    }
    let dir_end = base.rfind('/').filter(|&i| i >= origin_end).map_or(base.len(), |i| i + 1);
    let dir = &base[..dir_end];
    if dir.ends_with('/') { format!("{dir}{link}") } else { format!("{dir}/{link}") }
}

/// When to poll next: the interval after a success; after `failures` failures in a row the
/// interval doubled for each, at most `max`.
pub fn next_poll(interval: Duration, max: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let factor = 1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX);
    interval.saturating_mul(factor).min(max.max(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atom_and_rss_indexes_give_their_cap_links() {
        let atom = r#"<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
          <entry><id>1</id><link rel="alternate" href="https://x.example/page/1"/>
            <link type="application/cap+xml" href="/cap/1.xml"/></entry>
          <entry><id>2</id><link href="2.xml"/></entry>
          <entry><id>3</id><link rel="related" href="https://x.example/unrelated"/></entry></feed>"#;
        assert_eq!(
            cap_links(atom, "https://x.example/feeds/index.atom").unwrap(),
            ["https://x.example/cap/1.xml", "https://x.example/feeds/2.xml"]
        );
        let rss = "<rss version=\"2.0\"><channel><title>t</title><item><title>a</title>\
            <link>http://y.example/a.cap</link></item></channel></rss>";
        assert_eq!(cap_links(rss, "http://y.example/rss").unwrap(), ["http://y.example/a.cap"]);
        assert!(cap_links("<html><body/></html>", "http://y.example/").unwrap_err().contains("root is <html>"));
        let amp = "<rss><channel><item><link>http://y.example/a?x=1&amp;y=2</link></item></channel></rss>";
        assert_eq!(cap_links(amp, "http://y.example/").unwrap(), ["http://y.example/a?x=1&y=2"]);
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_maximum() {
        let (i, max) = (Duration::from_secs(60), Duration::from_secs(900));
        assert_eq!(next_poll(i, max, 0), i);
        assert_eq!(next_poll(i, max, 1), Duration::from_secs(120));
        assert_eq!(next_poll(i, max, 3), Duration::from_secs(480));
        assert_eq!(next_poll(i, max, 4), max);
        assert_eq!(next_poll(i, max, 40), max);
    }
}
