//! Reading the WPR recording profile (.wprp) into plain data, so tests can
//! check which providers, keywords and levels each profile records.

use std::collections::BTreeMap;

use roxmltree::{Document, Node};

use crate::model::parse_num;

/// An `<EventProvider>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventProvider {
    pub id: String,
    /// Name, `*Name` or GUID as written.
    pub name: String,
    pub level: Option<u8>,
    /// OR of the `<Keyword Value>`s (None when no Keywords element).
    pub keywords: Option<u64>,
}

/// A `<SystemProvider>` (kernel logger).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemProvider {
    pub id: String,
    pub keywords: Vec<String>,
    pub stacks: Vec<String>,
}

/// A `<Profile>` and what it collects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub id: String,
    pub name: String,
    pub detail_level: String,
    pub logging_mode: String,
    /// Event provider ids referenced, through any collector.
    pub event_providers: Vec<String>,
    /// System provider ids referenced.
    pub system_providers: Vec<String>,
    /// Collector ids referenced (system or event).
    pub collectors: Vec<String>,
}

/// A parsed .wprp file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wprp {
    pub event_providers: BTreeMap<String, EventProvider>,
    pub system_providers: BTreeMap<String, SystemProvider>,
    /// Collector id -> element name (SystemCollector / EventCollector).
    pub collectors: BTreeMap<String, String>,
    pub profiles: Vec<Profile>,
}

fn attr(n: Node, a: &str) -> Result<String, String> {
    n.attribute(a)
        .map(str::to_owned)
        .ok_or_else(|| format!("<{}> lacks {a:?}", n.tag_name().name()))
}

fn children<'a, 'i>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.descendants()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

impl Wprp {
    /// Parses a .wprp file.
    pub fn parse(xml: &str) -> Result<Wprp, String> {
        let doc = Document::parse(xml).map_err(|e| format!(".wprp is not well-formed XML: {e}"))?;
        let root = doc.root_element();
        if root.tag_name().name() != "WindowsPerformanceRecorder" {
            return Err(format!("root is {:?}", root.tag_name().name()));
        }
        let profiles_el = root
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == "Profiles")
            .ok_or("no <Profiles>")?;
        let mut w = Wprp {
            event_providers: BTreeMap::new(),
            system_providers: BTreeMap::new(),
            collectors: BTreeMap::new(),
            profiles: Vec::new(),
        };
        for c in profiles_el.children().filter(Node::is_element) {
            match c.tag_name().name() {
                "SystemCollector" | "EventCollector" => {
                    w.collectors
                        .insert(attr(c, "Id")?, c.tag_name().name().to_owned());
                }
                "EventProvider" => {
                    let mut keywords = None;
                    for k in children(c, "Keyword") {
                        let v = attr(k, "Value")?;
                        let n = parse_num(&v)
                            .ok_or_else(|| format!("keyword value {v:?} is not a number"))?;
                        keywords = Some(keywords.unwrap_or(0) | n);
                    }
                    let level = match c.attribute("Level") {
                        Some(l) => Some(
                            l.parse()
                                .map_err(|_| format!("Level {l:?} is not a number"))?,
                        ),
                        None => None,
                    };
                    let id = attr(c, "Id")?;
                    w.event_providers.insert(
                        id.clone(),
                        EventProvider {
                            id,
                            name: attr(c, "Name")?,
                            level,
                            keywords,
                        },
                    );
                }
                "SystemProvider" => {
                    let id = attr(c, "Id")?;
                    let keywords = children(c, "Keyword")
                        .map(|k| attr(k, "Value"))
                        .collect::<Result<_, _>>()?;
                    let stacks = children(c, "Stack")
                        .map(|k| attr(k, "Value"))
                        .collect::<Result<_, _>>()?;
                    w.system_providers.insert(
                        id.clone(),
                        SystemProvider {
                            id,
                            keywords,
                            stacks,
                        },
                    );
                }
                "Profile" => {
                    let mut p = Profile {
                        id: attr(c, "Id")?,
                        name: attr(c, "Name")?,
                        detail_level: attr(c, "DetailLevel")?,
                        logging_mode: attr(c, "LoggingMode")?,
                        event_providers: Vec::new(),
                        system_providers: Vec::new(),
                        collectors: Vec::new(),
                    };
                    for r in children(c, "SystemCollectorId").chain(children(c, "EventCollectorId"))
                    {
                        p.collectors.push(attr(r, "Value")?);
                    }
                    for r in children(c, "EventProviderId") {
                        p.event_providers.push(attr(r, "Value")?);
                    }
                    for r in children(c, "SystemProviderId") {
                        p.system_providers.push(attr(r, "Value")?);
                    }
                    w.profiles.push(p);
                }
                _ => {}
            }
        }
        Ok(w)
    }

    /// The profile with this Id (e.g. "TcpFrontGate.Light.File").
    pub fn profile(&self, id: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.id == id)
    }

    /// The event providers a profile records.
    pub fn providers_of(&self, p: &Profile) -> Vec<&EventProvider> {
        p.event_providers
            .iter()
            .filter_map(|id| self.event_providers.get(id))
            .collect()
    }
}
