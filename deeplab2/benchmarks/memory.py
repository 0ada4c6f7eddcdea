"""Resident memory of this process, from /proc (Linux; elsewhere 0)."""


def rss_bytes() -> int:
    """Resident set size now."""
    return _status_bytes('VmRSS')


def peak_rss_bytes() -> int:
    """Peak resident set size since start or the last reset_peak_rss."""
    return _status_bytes('VmHWM')


def reset_peak_rss() -> bool:
    """Sets the peak to the current RSS; False where the kernel does not
    allow it (then the peak stays the process's lifetime peak)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int:
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return 0
