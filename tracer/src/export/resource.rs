//! The OpenTelemetry resource: which process the spans describe.

use std::{
    fs,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use foldhash::HashMap;

use super::span::AttributeValue;

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceInfo {
    /// Unique to this resource (a process, as it was after its last exec), so that a sink can
    /// keep it encoded.
    pub id: u64,
    pub attributes: Vec<(String, AttributeValue<'static>)>,
}

/// What the user said of the resource (flags and environment), applied to every traced
/// process's.
#[derive(Debug, Clone, Default)]
pub struct ResourceOverrides {
    /// `--service-name`.
    pub service_name: Option<String>,
    /// `OTEL_SERVICE_NAME`.
    pub env_service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    pub env_attributes: Option<String>,
    /// `--export-command-line`: the full command line, which may carry secrets, is exported
    /// only when asked for.
    pub command_line: bool,
}

impl ResourceInfo {
    /// A resource with these attributes.
    pub fn new(attributes: Vec<(String, AttributeValue<'static>)>) -> ResourceInfo {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        ResourceInfo {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            attributes,
        }
    }

    /// Resource of traced process `pid`, read from /proc. `service.name` comes from, in order:
    /// the flag, `OTEL_SERVICE_NAME`, `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, the
    /// executable's name. The executable is the file /proc/PID/exe names (the semantic
    /// conventions' rule), whether the tracer launched the process or attached to it.
    pub fn for_process(pid: u32, overrides: &ResourceOverrides) -> ResourceInfo {
        let mut attributes: Vec<(String, AttributeValue<'static>)> = overrides
            .env_attributes
            .as_deref()
            .map(parse_key_values)
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, AttributeValue::Str(value.into())))
            .collect();
        let executable_path = executable_path(pid);
        let executable = executable_path
            .as_deref()
            .and_then(|path| path.rsplit('/').next())
            .map(str::to_owned)
            .or_else(|| comm(pid));
        let command_line = overrides.command_line.then(|| command_line(pid)).flatten();
        let from_attributes = attributes.iter().find_map(|(key, value)| match value {
            AttributeValue::Str(value) if key == "service.name" => Some(value.to_string()),
            _ => None,
        });
        let service = overrides
            .service_name
            .clone()
            .or_else(|| {
                overrides
                    .env_service_name
                    .clone()
                    .filter(|name| !name.is_empty())
            })
            .or(from_attributes)
            .or_else(|| executable.clone())
            .unwrap_or_else(|| "unknown_service".to_owned());
        let mut set = |key: &str, value: AttributeValue<'static>| {
            attributes.retain(|(existing, _)| existing != key);
            attributes.push((key.to_owned(), value));
        };
        set("service.name", AttributeValue::Str(service.into()));
        set("process.pid", AttributeValue::Int(i64::from(pid)));
        if let Some(executable) = executable {
            set(
                "process.executable.name",
                AttributeValue::Str(executable.into()),
            );
        }
        if let Some(path) = executable_path {
            set("process.executable.path", AttributeValue::Str(path.into()));
        }
        if let Some(command_line) = command_line {
            set(
                "process.command_line",
                AttributeValue::Str(command_line.into()),
            );
        }
        if let Some(host) = host_name() {
            set("host.name", AttributeValue::Str(host.into()));
        }
        set(
            "telemetry.sdk.name",
            AttributeValue::Str("grpc-tracer".into()),
        );
        ResourceInfo::new(attributes)
    }

    pub fn service_name(&self) -> &str {
        self.attributes
            .iter()
            .find_map(|(key, value)| match value {
                AttributeValue::Str(value) if key == "service.name" => Some(value.as_ref()),
                _ => None,
            })
            .unwrap_or("unknown_service")
    }
}

/// The resource of every traced process: read when the process is first traced or started,
/// again after it execs, and let go once it has exited and its last calls are out.
pub struct ProcessResources {
    overrides: ResourceOverrides,
    by_pid: HashMap<u32, Arc<ResourceInfo>>,
    /// Exited processes, let go at the next [`ProcessResources::let_go_of_exited`].
    exited: Vec<u32>,
}

impl ProcessResources {
    pub fn new(overrides: ResourceOverrides) -> ProcessResources {
        ProcessResources {
            overrides,
            by_pid: HashMap::default(),
            exited: Vec::new(),
        }
    }

    /// The resource of `pid`, read now if it was not yet.
    pub fn of(&mut self, pid: u32) -> Arc<ResourceInfo> {
        let overrides = &self.overrides;
        Arc::clone(
            self.by_pid
                .entry(pid)
                .or_insert_with(|| Arc::new(ResourceInfo::for_process(pid, overrides))),
        )
    }

    /// `pid` replaced its program (exec): its executable and command line changed.
    pub fn refresh(&mut self, pid: u32) {
        let resource = ResourceInfo::for_process(pid, &self.overrides);
        self.by_pid.insert(pid, Arc::new(resource));
    }

    /// `pid` exited; calls it still had may come before [`Self::let_go_of_exited`].
    pub fn exited(&mut self, pid: u32) {
        self.exited.push(pid);
    }

    pub fn let_go_of_exited(&mut self) {
        for pid in self.exited.drain(..) {
            self.by_pid.remove(&pid);
        }
    }
}

/// `key=value,key2=value2` with percent-encoded values (`OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_EXPORTER_OTLP_HEADERS`). Malformed entries are skipped.
pub fn parse_key_values(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), crate::grpc::percent_decode(value.trim())))
        })
        .collect()
}

/// The file `/proc/PID/exe` names.
fn executable_path(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|path| path.to_string_lossy().into_owned())
}

/// The process's name as the kernel keeps it, for when its executable cannot be read.
fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|comm| comm.trim().to_owned())
}

fn command_line(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|&byte| byte == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    if unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } != 0 {
        return None;
    }
    let end = buffer
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(buffer.len());
    Some(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_precedence_and_process_facts() {
        let me = std::process::id();
        let attributes = Some("deployment.environment=staging,service.name=from-attrs,bad".into());
        let overrides =
            |service_name: Option<&str>, env_service_name: Option<&str>| ResourceOverrides {
                service_name: service_name.map(str::to_owned),
                env_service_name: env_service_name.map(str::to_owned),
                env_attributes: attributes.clone(),
                command_line: false,
            };
        let flag = ResourceInfo::for_process(me, &overrides(Some("from-flag"), Some("from-env")));
        assert_eq!(flag.service_name(), "from-flag");
        let env = ResourceInfo::for_process(me, &overrides(None, Some("from-env")));
        assert_eq!(env.service_name(), "from-env");
        let from_attributes = ResourceInfo::for_process(me, &overrides(None, None));
        assert_eq!(from_attributes.service_name(), "from-attrs");
        let plain = ResourceInfo::for_process(me, &ResourceOverrides::default());
        let executable = plain
            .attributes
            .iter()
            .find(|(key, _)| key == "process.executable.name")
            .unwrap();
        assert_eq!(
            AttributeValue::Str(plain.service_name().to_owned().into()),
            executable.1
        );
        // The file /proc/PID/exe names.
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(plain.service_name(), name);
        assert!(flag.attributes.contains(&(
            "deployment.environment".to_owned(),
            AttributeValue::Str("staging".into())
        )));
        assert!(
            flag.attributes
                .contains(&("process.pid".to_owned(), AttributeValue::Int(i64::from(me))))
        );
        assert_ne!(flag.id, env.id);
        // The command line may carry secrets: only when asked for.
        let has = |resource: &ResourceInfo, key: &str| {
            resource.attributes.iter().any(|(name, _)| name == key)
        };
        assert!(!has(&plain, "process.command_line"));
        assert!(has(&plain, "process.executable.path"));
        let asked = ResourceOverrides {
            command_line: true,
            ..ResourceOverrides::default()
        };
        assert!(has(
            &ResourceInfo::for_process(me, &asked),
            "process.command_line"
        ));
    }

    #[test]
    fn each_process_has_its_own_resource_until_it_has_exited() {
        let me = std::process::id();
        let mut resources = ProcessResources::new(ResourceOverrides::default());
        let first = resources.of(me);
        assert!(Arc::ptr_eq(&first, &resources.of(me)), "read once");
        resources.refresh(me);
        assert_ne!(resources.of(me).id, first.id, "read again after exec");
        let before_exit = resources.of(me);
        resources.exited(me);
        assert!(
            Arc::ptr_eq(&before_exit, &resources.of(me)),
            "kept for its last calls"
        );
        resources.let_go_of_exited();
        assert_ne!(resources.of(me).id, before_exit.id);
    }

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_values("api-key=secret%20value, x = y ,=nokey,novalue"),
            vec![
                ("api-key".into(), "secret value".into()),
                ("x".into(), "y".into())
            ]
        );
    }
}
