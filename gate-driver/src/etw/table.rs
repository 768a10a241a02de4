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
                task: $task:ident, opcode: $op:ident;
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
            use super::super::{keyword, level, opcode, task};
            use gate_ksys::etw::{EVENT_DESCRIPTOR, WINEVENT_CHANNEL_TRACELOGGING};
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
                    pub const DESCRIPTOR: EVENT_DESCRIPTOR = EVENT_DESCRIPTOR {
                        Id: $id,
                        Version: $ver,
                        Channel: WINEVENT_CHANNEL_TRACELOGGING,
                        Level: level::$level,
                        Opcode: opcode::$op,
                        Task: task::$task,
                        Keyword: keyword::$kw,
                    };
                    pub const SCHEMA: EventSchema = EventSchema {
                        name: stringify!($ename),
                        function: stringify!($func),
                        id: $id,
                        version: $ver,
                        level: level::$level,
                        opcode: opcode::$op,
                        task: task::$task,
                        keyword: keyword::$kw,
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
    (@map) => { None };
    (@map $map:literal) => { Some($map) };
}

pub(crate) use gate_events;
