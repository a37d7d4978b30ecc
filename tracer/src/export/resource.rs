//! The OpenTelemetry resource: which process the spans describe.

use std::fs;

use super::span::AttributeValue;

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceInfo {
    pub attributes: Vec<(String, AttributeValue<'static>)>,
}

impl ResourceInfo {
    /// Resource of traced process `pid` (or of `launched`, the command it is about to exec).
    /// `service.name` comes from, in order: the flag, `OTEL_SERVICE_NAME`, `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, the executable name.
    pub fn for_process(
        pid: u32,
        launched: Option<&[String]>,
        service_name: Option<&str>,
        env_service_name: Option<&str>,
        env_attributes: Option<&str>,
    ) -> ResourceInfo {
        let mut attributes: Vec<(String, AttributeValue<'static>)> = env_attributes
            .map(parse_key_values)
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, AttributeValue::Str(value.into())))
            .collect();
        let executable = match launched {
            Some(command) => command
                .first()
                .map(|program| program.rsplit('/').next().unwrap_or(program).to_owned()),
            None => executable_name(pid),
        };
        let command_line = match launched {
            Some(command) => Some(command.join(" ")),
            None => command_line(pid),
        };
        let from_attributes = attributes.iter().find_map(|(key, value)| match value {
            AttributeValue::Str(value) if key == "service.name" => Some(value.to_string()),
            _ => None,
        });
        let service = service_name
            .map(str::to_owned)
            .or_else(|| {
                env_service_name
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
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
        ResourceInfo { attributes }
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

fn executable_name(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .or_else(|| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|comm| comm.trim().to_owned())
        })
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
        let attributes = Some("deployment.environment=staging,service.name=from-attrs,bad");
        let flag =
            ResourceInfo::for_process(me, None, Some("from-flag"), Some("from-env"), attributes);
        assert_eq!(flag.service_name(), "from-flag");
        assert_eq!(
            ResourceInfo::for_process(me, None, None, Some("from-env"), attributes).service_name(),
            "from-env"
        );
        assert_eq!(
            ResourceInfo::for_process(me, None, None, None, attributes).service_name(),
            "from-attrs"
        );
        let plain = ResourceInfo::for_process(me, None, None, None, None);
        let executable = plain
            .attributes
            .iter()
            .find(|(key, _)| key == "process.executable.name")
            .unwrap();
        assert_eq!(
            AttributeValue::Str(plain.service_name().to_owned().into()),
            executable.1
        );
        assert!(flag.attributes.contains(&(
            "deployment.environment".to_owned(),
            AttributeValue::Str("staging".into())
        )));
        assert!(
            flag.attributes
                .contains(&("process.pid".to_owned(), AttributeValue::Int(i64::from(me))))
        );
        let launched = ResourceInfo::for_process(
            me,
            Some(&["/usr/bin/python3".into(), "client.py".into()]),
            None,
            None,
            None,
        );
        assert_eq!(launched.service_name(), "python3");
        assert!(launched.attributes.contains(&(
            "process.command_line".to_owned(),
            AttributeValue::Str("/usr/bin/python3 client.py".into())
        )));
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
