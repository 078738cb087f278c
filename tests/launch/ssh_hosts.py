"""Two "hosts" on this machine for multi-host tests: key-only sshd daemons (Debian's
openssh-server, installed by launch/build/install_sshd.sh) on 127.0.0.2 and 127.0.0.3, the
second in its own mount namespace where `private_dir` is an empty tmpfs: a host that does not
share the first one's disk there. Loopback only; the daemons and their namespace end with
`stop()`."""
import os
import socket
import subprocess
import time

SSHD = "/usr/sbin/sshd"
ADDRESSES = ("127.0.0.2", "127.0.0.3")

CONFIG = """\
ListenAddress {address}
Port {port}
HostKey {root}/host_key
PidFile {root}/sshd_{name}.pid
AuthorizedKeysFile {root}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel VERBOSE
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


class SshHosts:
    """`key`: the client's private key; `port`: sshd's port on both addresses; `log(name)`:
    what a daemon logged (its accepted logins)."""

    def __init__(self, root, private_dir):
        self.root, self.private_dir = str(root), str(private_dir)
        self.port = free_port()
        self.key = os.path.join(self.root, "client_key")
        self.daemons = []
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        for path in (os.path.join(self.root, "host_key"), self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path],
                           check=True)
        with open(self.key + ".pub") as f, \
                open(os.path.join(self.root, "authorized_keys"), "w") as out:
            out.write(f.read())
        for name, address in zip("ab", ADDRESSES):
            config = os.path.join(self.root, f"sshd_{name}.conf")
            with open(config, "w") as f:
                f.write(CONFIG.format(address=address, port=self.port, root=self.root,
                                      name=name))
            daemon = [SSHD, "-D", "-f", config, "-E", self.log_path(name)]
            if name == "b":
                # Its own mount namespace, an empty tmpfs over private_dir: what a host
                # without a shared file system sees there.
                daemon = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          f"mount -t tmpfs tmpfs '{self.private_dir}' && exec "
                          + " ".join(daemon)]
            self.daemons.append(subprocess.Popen(daemon))
        for address in ADDRESSES:
            self._wait_listening(address)

    def log_path(self, name):
        return os.path.join(self.root, f"sshd_{name}.log")

    def log(self, name):
        with open(self.log_path(name)) as f:
            return f.read()

    def ssh(self, address, command):
        return subprocess.run(["ssh", "-o", "PasswordAuthentication=no", "-o",
                               "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                               "-o", "LogLevel=ERROR", "-p", str(self.port), "-i", self.key,
                               address, command], capture_output=True, text=True, timeout=60)

    def _wait_listening(self, address, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex((address, self.port)) == 0:
                    return
            if any(d.poll() is not None for d in self.daemons):
                raise RuntimeError(f"sshd exited: {self.log('a')} {self.log('b')}")
            time.sleep(0.2)
        raise RuntimeError(f"sshd on {address}:{self.port} did not start")

    def stop(self):
        for daemon in self.daemons:
            daemon.terminate()
        for daemon in self.daemons:
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()


def wait_for_worker(launcher, *, module, rank, timeout=120):
    """The pid and the environment of the Python process running `module` as Horovod rank
    `rank` (whichever "host" started it: they share this machine's processes)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if launcher.poll() is not None:
            raise RuntimeError(f"the launcher ended first: {launcher.communicate()}")
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
                with open(f"/proc/{pid}/environ", "rb") as f:
                    environ = dict(item.split("=", 1) for item in
                                   f.read().decode(errors="replace").split("\0") if "=" in item)
            except OSError:
                continue
            if "python" in os.path.basename(argv[0]) and argv[1:3] == ["-m", module] and \
                    environ.get("HOROVOD_RANK") == str(rank):
                return int(pid), environ
        time.sleep(0.2)
    raise RuntimeError(f"no rank {rank} running {module} after {timeout} s")
