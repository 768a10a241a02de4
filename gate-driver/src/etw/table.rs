//! The macro that turns the event table (in `events.rs`) into write
//! functions and the [`SCHEMA`](super::SCHEMA) constant, so the code that
//! writes an event and its published description cannot drift apart.

/// Declares events. For each event it generates:
/// - `pub fn <function>(provider: &Provider, <one argument per field>)`,
///   which returns at once unless a session wants the event's level and
///   keyword, and otherwise writes it with EtwWriteTransfer;
/// - a `const` [`EventSchema`](super::meta::EventSchema) (collected into
///   `SCHEMA`) and its metadata blob, built at compile time.
///
/// Header syntax: `version, level, keyword, task, opcode` and an optional
/// `channel: ADMIN` or `channel: OPERATIONAL` (see
/// [`channel`](super::channel)): such an event's descriptor carries that
/// Event Log channel and the channel's keyword bit besides its own keyword
/// (what mc.exe puts in a manifest event's descriptor), so the Event Log
/// records it once the manifest is installed. Without it the channel is 11
/// (TraceLogging).
///
/// Field syntax: `/// doc` then `rust_name "WireName": Type` with an
/// optional `=> "ValueMapName"`; `Type` is a
/// [`FieldType`](super::meta::FieldType) variant.
macro_rules! gate_events {
    (
        $(
            $(#[doc = $edoc:literal])+
            $ename:ident = $id:literal {
                fn $func:ident;
                version: $ver:literal, level: $level:ident, keyword: $kw:ident,
                task: $task:ident, opcode: $op:ident $(, channel: $chan:ident)?;
                $(
                    $(#[doc = $fdoc:literal])+
                    $fid:ident $fname:literal : $fty:ident $(=> $map:literal)?
                ),* $(,)?
            }
        )*
    ) => {
        /// Per-event constants (descriptor, schema, metadata blob).
        #[allow(non_snake_case, non_upper_case_globals)]
        pub mod def {
            use super::super::meta::{self, EventSchema, FieldSchema, FieldType};
            use super::super::{channel, keyword, level, opcode, task};
            use gate_ksys::etw::EVENT_DESCRIPTOR;
            $(
                #[doc = concat!("Definition of the `", stringify!($ename), "` event.")]
                pub mod $ename {
                    use super::*;
                    pub const FIELDS: &[FieldSchema] = &[
                        $(FieldSchema {
                            name: $fname,
                            ty: FieldType::$fty,
                            map: $crate::etw::table::gate_events!(@map $($map)?),
                            doc: concat!($($fdoc),+),
                        },)*
                    ];
                    const META_LEN: usize = meta::event_meta_len(stringify!($ename), FIELDS);
                    pub static METADATA: [u8; META_LEN] =
                        meta::event_meta::<META_LEN>(stringify!($ename), FIELDS);
                    pub const DESCRIPTORS: usize = meta::descriptor_count(FIELDS);
                    const CHANNEL: u8 =
                        $crate::etw::table::gate_events!(@channel $($chan)?);
                    const KEYWORD: u64 = keyword::$kw | channel::keyword_bit(CHANNEL);
                    pub const DESCRIPTOR: EVENT_DESCRIPTOR = EVENT_DESCRIPTOR {
                        Id: $id,
                        Version: $ver,
                        Channel: CHANNEL,
                        Level: level::$level,
                        Opcode: opcode::$op,
                        Task: task::$task,
                        Keyword: KEYWORD,
                    };
                    pub const SCHEMA: EventSchema = EventSchema {
                        name: stringify!($ename),
                        function: stringify!($func),
                        id: $id,
                        version: $ver,
                        level: level::$level,
                        opcode: opcode::$op,
                        task: task::$task,
                        keyword: KEYWORD,
                        channel: CHANNEL,
                        doc: concat!($($edoc),+),
                        fields: FIELDS,
                        metadata: &METADATA,
                    };
                }
            )*
        }

        /// Every event the driver writes, in table order.
        pub const SCHEMA: &[super::meta::EventSchema] = &[$(def::$ename::SCHEMA),*];

        $(
            $(#[doc = $edoc])+
            ///
            /// Fields:
            $(
                #[doc = concat!("- `", stringify!($fid), "` (", $fname, "):", $($fdoc),+)]
            )*
            #[allow(clippy::too_many_arguments)]
            pub fn $func(provider: &super::Provider, $($fid: $crate::__etw_arg_ty!($fty)),*) {
                use super::meta::{DescWriter, Push};
                use gate_ksys::etw::{
                    EVENT_DATA_DESCRIPTOR, EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA,
                    EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA,
                };
                const D: gate_ksys::etw::EVENT_DESCRIPTOR = def::$ename::DESCRIPTOR;
                if !provider.enabled(D.Level, D.Keyword) {
                    return;
                }
                $(let $fid = super::meta::store::$fty($fid);)*
                let mut slots = [EVENT_DATA_DESCRIPTOR::default(); def::$ename::DESCRIPTORS];
                let mut w = DescWriter::new(&mut slots);
                w.push_typed(&super::PROVIDER_TRAITS, EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA);
                w.push_typed(&def::$ename::METADATA, EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA);
                $($fid.push(&mut w);)*
                let _ = provider.write(&D, w.written());
            }
        )*
    };
    (@channel) => { channel::TRACELOGGING };
    (@channel $chan:ident) => { channel::$chan };
    (@map) => { None };
    (@map $map:literal) => { Some($map) };
}

pub(crate) use gate_events;
