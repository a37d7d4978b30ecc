//! The TLS programs on `uprobe_multi` links (Linux 6.6), where the kernel has them.
//!
//! A uprobe attached the usual way is a perf event, and as the kernel unregisters each it waits
//! out a grace period, one uprobe after another (about 85 ms each here: detaching a file's
//! eight took 0.87 s). One `uprobe_multi` link holds every offset a program is attached to in
//! a file, and links are released in parallel: a file's five links detached in 64 ms.
//!
//! Such a link takes a program loaded for it (`BPF_TRACE_UPROBE_MULTI`), which aya 0.14 cannot
//! load. So these programs are loaded here, from the same object: aya-obj relocates it against
//! the maps aya made (by their descriptors) and links its functions, and the program is loaded
//! with the BTF aya loaded for the object (which its function records refer to), found through
//! a program aya loaded. A kernel without these links refuses to make one: the caller then
//! attaches the perf-event way.

use std::{
    collections::HashSet,
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
    time::Duration,
};

use aya_obj::generated::{
    BPF_F_UPROBE_MULTI_RETURN, bpf_attach_type::BPF_TRACE_UPROBE_MULTI, bpf_attr, bpf_cmd,
    bpf_prog_info, bpf_prog_type::BPF_PROG_TYPE_KPROBE,
};

/// The programs, loaded for `uprobe_multi` links.
pub struct MultiPrograms {
    programs: Vec<(&'static str, OwnedFd)>,
}

/// What the kernel says of a loaded program.
pub struct LoadedProgram {
    pub verified_instructions: Option<u32>,
    pub runs: u64,
    pub time: Duration,
}

impl MultiPrograms {
    /// Loads `names` from `object`, whose maps aya made (`map_fd` gives each one's descriptor
    /// by name) and whose BTF aya loaded (`btf`).
    pub fn load(
        object: &[u8],
        names: &[&'static str],
        map_fd: impl Fn(&str) -> Option<RawFd>,
        btf: BorrowedFd<'_>,
    ) -> Result<MultiPrograms, String> {
        let mut object = aya_obj::Object::parse(object).map_err(|err| err.to_string())?;
        let text_sections: HashSet<usize> = object
            .functions
            .keys()
            .map(|(section, _)| *section)
            .collect();
        let maps = object.maps.clone();
        let fds = maps
            .iter()
            .map(|(name, map)| {
                let fd = map_fd(name).ok_or_else(|| format!("map {name} not created"))?;
                Ok((name.as_str(), fd, map))
            })
            .collect::<Result<Vec<_>, String>>()?;
        object
            .relocate_maps(fds.into_iter(), &text_sections)
            .map_err(|err| err.to_string())?;
        object
            .relocate_calls(&text_sections)
            .map_err(|err| err.to_string())?;
        let mut programs = Vec::new();
        for &name in names {
            let program = object
                .programs
                .get(name)
                .ok_or_else(|| format!("program {name} missing from object"))?;
            let function = &object.functions[&program.function_key()];
            let fd = load_program(name, program, function, btf)?;
            programs.push((name, fd));
        }
        Ok(MultiPrograms { programs })
    }

    /// Attaches program `name` at `offsets` of the file at `path`, at their return if
    /// `at_return`, for every process.
    pub fn attach(
        &self,
        name: &str,
        path: &Path,
        offsets: &[u64],
        at_return: bool,
    ) -> io::Result<OwnedFd> {
        let program = self.fd(name).ok_or(io::ErrorKind::NotFound)?;
        let path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: a zeroed bpf_attr is valid; the fields set are those of BPF_LINK_CREATE.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writing plain integers into the union's link_create member.
        unsafe {
            let link = &mut attr.link_create;
            link.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
            link.attach_type = BPF_TRACE_UPROBE_MULTI as u32;
            let multi = &mut link.__bindgen_anon_3.uprobe_multi;
            multi.path = path.as_ptr() as u64;
            multi.offsets = offsets.as_ptr() as u64;
            multi.cnt = offsets.len() as u32;
            multi.flags = if at_return {
                BPF_F_UPROBE_MULTI_RETURN
            } else {
                0
            };
        }
        // SAFETY: `path` and `offsets` outlive the call.
        sys_bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr)
    }

    /// Each program's name, and what the kernel says of it.
    pub fn loaded(&self) -> Vec<(&'static str, LoadedProgram)> {
        self.programs
            .iter()
            .filter_map(|(name, fd)| Some((*name, program_info(fd).ok()?)))
            .collect()
    }

    fn fd(&self, name: &str) -> Option<&OwnedFd> {
        self.programs
            .iter()
            .find(|(program, _)| *program == name)
            .map(|(_, fd)| fd)
    }
}

/// Loads one program for `uprobe_multi` links; the verifier's log only on failure.
fn load_program(
    name: &str,
    program: &aya_obj::Program,
    function: &aya_obj::Function,
    btf: BorrowedFd<'_>,
) -> Result<OwnedFd, String> {
    let load = |log: Option<&mut Vec<u8>>| {
        // SAFETY: a zeroed bpf_attr is valid; the fields set are those of BPF_PROG_LOAD.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writing plain integers and pointers into the union's BPF_PROG_LOAD member.
        let load = unsafe { &mut attr.__bindgen_anon_3 };
        load.prog_type = BPF_PROG_TYPE_KPROBE as u32;
        load.expected_attach_type = BPF_TRACE_UPROBE_MULTI as u32;
        load.insn_cnt = function.instructions.len() as u32;
        load.insns = function.instructions.as_ptr() as u64;
        load.license = program.license.as_ptr() as u64;
        load.prog_btf_fd = btf.as_raw_fd() as u32;
        load.func_info_rec_size = function.func_info_rec_size as u32;
        load.func_info = function.func_info.func_info.as_ptr() as u64;
        load.func_info_cnt = function.func_info.func_info.len() as u32;
        load.line_info_rec_size = function.line_info_rec_size as u32;
        load.line_info = function.line_info.line_info.as_ptr() as u64;
        load.line_info_cnt = function.line_info.line_info.len() as u32;
        for (slot, byte) in load.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *slot = byte as core::ffi::c_char;
        }
        if let Some(log) = log {
            load.log_level = 1;
            load.log_size = log.len() as u32;
            load.log_buf = log.as_mut_ptr() as u64;
        }
        // SAFETY: every pointer set above outlives the call.
        sys_bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    load(None).map_err(|err| {
        let mut log = vec![0u8; 1 << 20];
        let _ = load(Some(&mut log));
        let end = log.iter().position(|&byte| byte == 0).unwrap_or(0);
        let log = String::from_utf8_lossy(&log[..end]);
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "loading {name} for uprobe_multi links: {err}\n{}",
            tail.join("\n")
        )
    })
}

/// The descriptor of the BTF object the kernel knows by `id`.
pub fn btf_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    // SAFETY: a zeroed bpf_attr is valid; btf_id is the field BPF_BTF_GET_FD_BY_ID reads.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_6.__bindgen_anon_1.btf_id = id;
    sys_bpf_fd(bpf_cmd::BPF_BTF_GET_FD_BY_ID, &mut attr)
}

fn program_info(fd: &OwnedFd) -> io::Result<LoadedProgram> {
    // SAFETY: bpf_prog_info is plain data.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    // SAFETY: a zeroed bpf_attr is valid; the fields set are those of BPF_OBJ_GET_INFO_BY_FD.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = std::mem::size_of::<bpf_prog_info>() as u32;
    attr.info.info = (&raw mut info) as u64;
    // `info` outlives the call and is as long as said.
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(LoadedProgram {
        verified_instructions: (info.verified_insns > 0).then_some(info.verified_insns),
        runs: info.run_cnt,
        time: Duration::from_nanos(info.run_time_ns),
    })
}

/// The bpf(2) commands here that return a new descriptor.
fn sys_bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    let fd = sys_bpf(cmd, attr)?;
    // SAFETY: the command returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// bpf(2), with `attr` filled for `cmd` by the caller (and whatever it points to alive).
fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: `attr` is a valid bpf_attr for `cmd`, as each caller fills it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as i32,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}
