"""A small fake Hugging Face Hub for tests: the part of the HTTP API that push and download use.

It listens on 127.0.0.1 only (random port) and keeps everything in memory:
repos (owner, private flag, branches, commits with full file trees), LFS
objects by sha256, pull requests, and every request seen (method, path,
status, Authorization header), so tests can assert on exactly what the real
``huggingface_hub`` client sent. Routes:

- ``POST /api/repos/create``                         create (409 with ``url`` if it exists)
- ``POST /api/validate-yaml``                        parse the card's YAML like the Hub does (subset)
- ``GET  /api/models/{repo}[/revision/{rev}]``       repo info (``sha``, ``private``, ``siblings``, ``cardData``)
- ``GET  /api/models/{repo}/refs``                   branches
- ``POST /api/models/{repo}/branch/{name}``          create a branch (409 if it exists)
- ``POST /api/models/{repo}/preupload/{rev}``        ``regular``/``lfs`` per file, plus the remote ``oid``
- ``POST /{repo}.git/info/lfs/objects/batch``        LFS batch: basic PUT, or multipart above a threshold
- ``PUT  /lfs/upload/{oid}[/part/{n}]`` + ``POST /lfs/complete/{oid}`` + ``POST /lfs/verify``
- ``POST /api/models/{repo}/commit/{rev}``           ndjson commit, ``?create_pr=1`` opens a PR (``refs/pr/N``)
- ``GET  /api/models/{repo}/tree/{rev}[/path]``      recursive listing (for ``snapshot_download``)
- ``GET|HEAD /{repo}/resolve/{rev}/{path}``           file download with the Hub's commit/etag headers

Anything else is answered 404 and recorded in ``unhandled`` so a test can show
which call of a newer client is missing. Tests can queue failures
(``fail(...)``: a status code, or a dropped connection) and read back
``requests``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_PATTERNS = ["*.safetensors", "*.bin", "*.pt", "*.pth", "*.png", "*.jpg", "*.gguf", "*.msgpack", "*.model"]
LFS_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Entry:
    size: int
    oid: str  # git blob sha1 for regular files, sha256 for LFS files (what preupload reports)
    lfs: bool
    content: bytes | None = None  # regular files only; LFS bytes live in FakeHub.lfs


@dataclass
class Commit:
    oid: str
    parent: str | None
    summary: str
    description: str
    files: dict[str, Entry]


@dataclass
class Repo:
    repo_id: str
    owner: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    prs: list[dict] = field(default_factory=list)


@dataclass
class Request:
    """One request as the server saw it; readable as ``r.path`` or ``r["path"]``."""

    method: str
    path: str
    query: dict
    authorization: str | None
    status: int | str | None = None  # HTTP status, or "dropped"

    def __getitem__(self, key: str):
        return getattr(self, key)


@dataclass
class Failure:
    method: str
    path: re.Pattern
    status: int | None
    drop: bool
    times: int
    message: str
    error_code: str | None


class FakeHub:
    """In-memory Hub; ``with FakeHub(tokens={"hf_x": "alice"}) as hub: HfApi(endpoint=hub.url, token="hf_x")``."""

    def __init__(self, tokens: dict[str, str] | None = None, orgs: dict[str, set[str]] | None = None,
                 multipart_threshold: int | None = None, part_size: int = 1 << 20, verify: bool = True):
        self.tokens = dict(tokens or {"hf_test_write_token": "alice"})
        self.orgs = {k: set(v) for k, v in (orgs or {}).items()}  # org -> members
        self.read_only: set[str] = set()  # tokens that may read but not write
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.verify = verify
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.parts: dict[str, dict[int, bytes]] = {}
        self.requests: list[Request] = []
        self.unhandled: list[str] = []
        self.failures: list[Failure] = []
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.timeout = 1
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls
    def fail(self, method: str, path_regex: str, status: int | None = None, *, drop: bool = False, times: int = 1,
             message: str = "injected failure", error_code: str | None = None) -> None:
        """Answer the next ``times`` matching requests with ``status`` (or drop the connection)."""
        with self._lock:
            self.failures.append(Failure(method.upper(), re.compile(path_regex), status, drop, times, message,
                                         error_code))

    def add_repo(self, repo_id: str, owner: str, private: bool = False, files: dict[str, bytes] | None = None) -> Repo:
        """Create a repo directly (e.g. one owned by someone else), optionally with a first commit of ``files``."""
        with self._lock:
            repo = self._create(repo_id, owner, private)
            if files:
                tree = dict(repo.commits[repo.branches["main"]].files)
                for path, data in files.items():
                    tree[path] = self._entry(path, data)
                self._commit(repo, "main", tree, "seed", "")
            return repo

    # ------------------------------------------------------------------ inspection
    def head(self, repo_id: str, rev: str = "main") -> str:
        return self.repos[repo_id].branches[rev]

    def tree(self, repo_id: str, rev: str = "main") -> dict[str, Entry]:
        repo = self.repos[repo_id]
        return repo.commits[self._resolve(repo, rev)].files

    def file_bytes(self, repo_id: str, path: str, rev: str = "main") -> bytes:
        entry = self.tree(repo_id, rev)[path]
        return self.lfs[entry.oid] if entry.lfs else entry.content

    def commits(self, repo_id: str, rev: str = "main") -> list[Commit]:
        """Commits reachable from ``rev``, newest first."""
        repo = self.repos[repo_id]
        out, oid = [], self._resolve(repo, rev)
        while oid:
            c = repo.commits[oid]
            out.append(c)
            oid = c.parent
        return out

    def auth_headers(self) -> list[str]:
        return [r.authorization for r in self.requests if r.authorization]

    # ------------------------------------------------------------------ internals
    def _entry(self, path: str, data: bytes, lfs: bool | None = None) -> Entry:
        if lfs is None:
            lfs = self._is_lfs(path, len(data), data[:512])
        if lfs:
            oid = hashlib.sha256(data).hexdigest()
            self.lfs[oid] = data
            return Entry(size=len(data), oid=oid, lfs=True)
        return Entry(size=len(data), oid=git_blob_oid(data), lfs=False, content=data)

    @staticmethod
    def _is_lfs(path: str, size: int, sample: bytes) -> bool:
        name = path.rsplit("/", 1)[-1]
        return size >= LFS_SIZE or b"\0" in sample or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)

    def _create(self, repo_id: str, owner: str, private: bool) -> Repo:
        repo = Repo(repo_id=repo_id, owner=owner, private=private)
        self.repos[repo_id] = repo
        self._commit(repo, "main", {".gitattributes": self._entry(".gitattributes", GITATTRIBUTES, lfs=False)},
                     "initial commit", "")
        return repo

    def _commit(self, repo: Repo, branch: str | None, files: dict[str, Entry], summary: str, description: str,
                parent: str | None = None) -> Commit:
        parent = parent if parent is not None else repo.branches.get(branch) if branch else None
        h = hashlib.sha1()
        h.update(f"{parent}\n{summary}\n{description}\n{next(self._counter)}\n".encode())
        for path in sorted(files):
            h.update(f"{path} {files[path].oid}\n".encode())
        commit = Commit(oid=h.hexdigest(), parent=parent, summary=summary, description=description, files=files)
        repo.commits[commit.oid] = commit
        if branch:
            repo.branches[branch] = commit.oid
        return commit

    @staticmethod
    def _resolve(repo: Repo, rev: str) -> str | None:
        if rev in repo.branches:
            return repo.branches[rev]
        if rev in repo.commits:
            return rev
        return None

    def user(self, auth: str | None) -> str | None:
        if not auth or not auth.startswith("Bearer "):
            return None
        return self.tokens.get(auth[len("Bearer "):])

    def may_write(self, user: str | None, auth: str | None, namespace: str) -> bool:
        if user is None or (auth and auth[len("Bearer "):] in self.read_only):
            return False
        return namespace == user or user in self.orgs.get(namespace, set())


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stuck client cannot hold a server thread for long

    def log_message(self, *args):  # keep pytest output clean
        pass

    # ---------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None,
              content_type: str = "application/json", head: bool = False) -> None:
        data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(data)
        self._status = status

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers)

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        self._status = None
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        auth = self.headers.get("Authorization")
        body = self._body() if method in ("POST", "PUT") else b""
        with hub._lock:
            record = Request(method, path, query, auth)
            hub.requests.append(record)
            for f in hub.failures:
                if f.times > 0 and f.method == method and f.path.search(path):
                    f.times -= 1
                    if f.drop:
                        record.status = "dropped"
                        self.close_connection = True
                        try:
                            self.connection.shutdown(2)
                        except OSError:
                            pass
                        return
                    record.status = f.status
                    self._error(f.status, f.message, f.error_code)
                    return
        try:
            self._route(method, path, query, auth, body)
        except Exception as e:  # noqa: BLE001 - a server bug must show up as a 500, not a hang
            self._error(500, f"fake hub error: {type(e).__name__}: {e}")
        record.status = self._status

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # ---------------------------------------------------------------- routes
    def _route(self, method, path, query, auth, body):
        hub = self.hub
        user = hub.user(auth)
        if auth and user is None:
            return self._error(401, "Invalid credentials in Authorization header")
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(.*))?", path)
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(user, auth, json.loads(body or b"{}"))
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body or b"{}"))
        if m:
            return self._models(method, m.group(1), m.group(2) or "", query, user, auth, body)
        m = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            return self._lfs_batch(m.group(1), user, auth, json.loads(body or b"{}"))
        m = re.fullmatch(r"/lfs/upload/([0-9a-f]{64})(?:/part/(\d+))?", path)
        if m and method == "PUT":
            return self._lfs_put(m.group(1), m.group(2), body)
        m = re.fullmatch(r"/lfs/complete/([0-9a-f]{64})", path)
        if m and method == "POST":
            return self._lfs_complete(m.group(1), json.loads(body or b"{}"))
        if path == "/lfs/verify" and method == "POST":
            doc = json.loads(body or b"{}")
            if doc.get("oid") in hub.lfs and len(hub.lfs[doc["oid"]]) == doc.get("size"):
                return self._send(200, {})
            return self._error(404, "object not found")
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            return self._resolve_file(m.group(1), m.group(2), m.group(3), user, head=method == "HEAD")
        hub.unhandled.append(f"{method} {path}")
        return self._error(404, f"fake hub: no route for {method} {path}")

    def _visible(self, repo: Repo | None, user: str | None) -> bool:
        return repo is not None and (not repo.private or user == repo.owner or
                                     user in self.hub.orgs.get(repo.owner, set()))

    def _repo_or_404(self, repo_id: str, user: str | None) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if not self._visible(repo, user):
            self._error(404 if user else 401, "Repository not found", "RepoNotFound")
            return None
        return repo

    def _create_repo(self, user, auth, doc):
        hub = self.hub
        if user is None:
            return self._error(401, "You must be authenticated to create a repo")
        ns = doc.get("organization") or user
        name = doc.get("name") or ""
        repo_id = f"{ns}/{name}"
        if not re.fullmatch(r"[\w.-]+", name):
            return self._send(400, {"error": f"invalid repo name {name!r}"})
        if not hub.may_write(user, auth, ns):
            return self._error(403, f"You don't have the rights to create a model under the namespace \"{ns}\"")
        with hub._lock:
            if repo_id in hub.repos:
                return self._send(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"})
            private = doc.get("visibility") == "private" or doc.get("private") is True
            hub._create(repo_id, user, private)
        return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self, doc):
        import yaml

        content = doc.get("content") or ""
        m = re.match(r"^\s*---\r?\n([\s\S]*?)\r?\n---[ \t]*(\r?\n|$)", content)
        errors = []
        if m:
            try:
                meta = yaml.safe_load(m.group(1)) or {}
            except yaml.YAMLError as e:
                errors.append({"message": f"invalid YAML: {e}"})
                meta = {}
            if not isinstance(meta, dict):
                errors.append({"message": "metadata must be a mapping"})
                meta = {}
            rel = meta.get("base_model_relation")
            if rel is not None:
                if rel not in ("adapter", "merge", "quantized", "finetune"):
                    errors.append({"message": f"\"base_model_relation\" must be one of adapter, merge, quantized, finetune"})
                if not meta.get("base_model"):
                    errors.append({"message": "\"base_model_relation\" requires \"base_model\""})
            if "tags" in meta and not (isinstance(meta["tags"], list) and all(isinstance(t, str) for t in meta["tags"])):
                errors.append({"message": "\"tags\" must be a list of strings"})
            if "license" in meta and not isinstance(meta["license"], str):
                errors.append({"message": "\"license\" must be a string"})
        if errors:
            return self._send(400, {"errors": errors, "warnings": []})
        warnings = [] if m else [{"message": "empty or missing yaml metadata in repo card"}]
        return self._send(200, {"errors": [], "warnings": warnings})

    def _info(self, repo: Repo, rev: str):
        oid = self.hub._resolve(repo, rev)
        if oid is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        commit = repo.commits[oid]
        card = {}
        if "README.md" in commit.files:
            import yaml

            text = (commit.files["README.md"].content or b"").decode("utf-8", "replace")
            m = re.match(r"^\s*---\r?\n([\s\S]*?)\r?\n---", text)
            card = (yaml.safe_load(m.group(1)) or {}) if m else {}
        return self._send(200, {
            "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.owner, "sha": oid,
            "private": repo.private, "disabled": False, "gated": False, "tags": [],
            "siblings": [{"rfilename": p} for p in sorted(commit.files)], "cardData": card,
        })

    def _models(self, method, repo_id, rest, query, user, auth, body):
        hub = self.hub
        repo = self._repo_or_404(repo_id, user)
        if repo is None:
            return
        ns = repo_id.split("/")[0]
        if method == "GET" and rest == "":
            return self._info(repo, "main")
        m = re.fullmatch(r"revision/(.+)", rest)
        if method == "GET" and m:
            return self._info(repo, m.group(1))
        if method == "GET" and rest == "refs":
            return self._send(200, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c}
                                                 for b, c in repo.branches.items() if not b.startswith("refs/pr/")],
                                    "converts": [], "tags": []})
        m = re.fullmatch(r"tree/([^/]+)(?:/(.*))?", rest)
        if method == "GET" and m:
            return self._tree(repo, m.group(1), m.group(2) or "")
        if method != "POST":
            hub.unhandled.append(f"{method} /api/models/{repo_id}/{rest}")
            return self._error(404, f"fake hub: no route for {method} {rest}")
        if not hub.may_write(user, auth, ns):
            return self._error(403, f"You don't have write access to {repo_id}")
        m = re.fullmatch(r"branch/(.+)", rest)
        if m:
            name = m.group(1)
            doc = json.loads(body or b"{}")
            with hub._lock:
                if name in repo.branches:
                    return self._error(409, f"Reference already exists: refs/heads/{name}")
                start = hub._resolve(repo, doc.get("startingPoint") or "main")
                if start is None:
                    return self._error(404, "Invalid starting point", "RevisionNotFound")
                repo.branches[name] = start
            return self._send(200, {})
        m = re.fullmatch(r"preupload/(.+)", rest)
        if m:
            return self._preupload(repo, m.group(1), json.loads(body or b"{}"))
        m = re.fullmatch(r"commit/(.+)", rest)
        if m:
            return self._commit(repo, m.group(1), query, body)
        hub.unhandled.append(f"{method} /api/models/{repo_id}/{rest}")
        return self._error(404, f"fake hub: no route for {method} {rest}")

    def _preupload(self, repo, rev, doc):
        hub = self.hub
        oid = hub._resolve(repo, rev)
        if oid is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        tree = repo.commits[oid].files
        out = []
        for f in doc.get("files", []):
            sample = base64.b64decode(f.get("sample") or "")
            lfs = hub._is_lfs(f["path"], int(f.get("size", 0)), sample)
            item = {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            if f["path"] in tree:
                item["oid"] = tree[f["path"]].oid
            out.append(item)
        return self._send(200, {"files": out, "commitOid": oid})

    def _lfs_batch(self, repo_id, user, auth, doc):
        hub = self.hub
        repo = self._repo_or_404(repo_id, user)
        if repo is None:
            return
        if not hub.may_write(user, auth, repo_id.split("/")[0]):
            return self._error(403, f"You don't have write access to {repo_id}")
        objects = []
        for o in doc.get("objects", []):
            oid, size = o["oid"], int(o["size"])
            item = {"oid": oid, "size": size, "authenticated": True}
            if oid not in hub.lfs:
                if hub.multipart_threshold is not None and size > hub.multipart_threshold:
                    n = -(-size // hub.part_size)
                    header = {"chunk_size": str(hub.part_size)}
                    header.update({str(i): f"{hub.url}/lfs/upload/{oid}/part/{i}" for i in range(1, n + 1)})
                    upload = {"href": f"{hub.url}/lfs/complete/{oid}", "header": header}
                else:
                    upload = {"href": f"{hub.url}/lfs/upload/{oid}", "header": {}}
                item["actions"] = {"upload": upload}
                if hub.verify:
                    item["actions"]["verify"] = {"href": f"{hub.url}/lfs/verify", "header": {}}
            objects.append(item)
        return self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                          content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, oid, part, body):
        hub = self.hub
        if part is not None:
            with hub._lock:
                hub.parts.setdefault(oid, {})[int(part)] = body
            return self._send(200, {}, headers={"ETag": f"\"{hashlib.md5(body).hexdigest()}\""})
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "sha256 mismatch")
        with hub._lock:
            hub.lfs[oid] = body
        return self._send(200, {})

    def _lfs_complete(self, oid, doc):
        hub = self.hub
        parts = hub.parts.get(oid, {})
        numbers = [p["partNumber"] for p in doc.get("parts", [])]
        if sorted(numbers) != sorted(parts):
            return self._error(400, "parts do not match the uploaded parts")
        data = b"".join(parts[n] for n in sorted(numbers))
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, "sha256 mismatch after multipart completion")
        with hub._lock:
            hub.lfs[oid] = data
            hub.parts.pop(oid, None)
        return self._send(200, {})

    def _commit(self, repo, rev, query, body):
        hub = self.hub
        create_pr = query.get("create_pr", ["0"])[0] in ("1", "true")
        lines = [json.loads(ln) for ln in body.decode().splitlines() if ln.strip()]
        header = next((ln["value"] for ln in lines if ln.get("key") == "header"), {})
        with hub._lock:
            base = hub._resolve(repo, rev)
            if base is None:
                return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            if not create_pr and rev not in repo.branches:
                return self._error(400, f"Cannot commit to {rev}: not a branch")
            parent = header.get("parentCommit")
            if parent and not create_pr and not base.startswith(parent):
                return self._error(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[base].files)
            for ln in lines:
                key, v = ln.get("key"), ln.get("value") or {}
                if key == "file":
                    data = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else v["content"].encode()
                    files[v["path"]] = hub._entry(v["path"], data, lfs=False)
                elif key == "lfsFile":
                    if v["oid"] not in hub.lfs:
                        return self._error(422, f"LFS object {v['oid']} for {v['path']} was never uploaded")
                    files[v["path"]] = Entry(size=len(hub.lfs[v["oid"]]), oid=v["oid"], lfs=True)
                elif key == "deletedFile":
                    files.pop(v["path"], None)
                elif key == "deletedFolder":
                    prefix = v["path"].rstrip("/") + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(prefix)}
            summary, description = header.get("summary", ""), header.get("description", "")
            if create_pr:
                num = len(repo.prs) + 1
                ref = f"refs/pr/{num}"
                commit = hub._commit(repo, None, files, summary, description, parent=base)
                repo.branches[ref] = commit.oid
                pr_url = f"{hub.url}/{repo.repo_id}/discussions/{num}"
                repo.prs.append({"num": num, "ref": ref, "target": rev, "title": summary, "commit": commit.oid,
                                 "url": pr_url})
            else:
                commit = hub._commit(repo, rev, files, summary, description)
                pr_url = None
        return self._send(200, {"commitUrl": f"{hub.url}/{repo.repo_id}/commit/{commit.oid}",
                                "commitOid": commit.oid, "pullRequestUrl": pr_url, "success": True})

    def _tree(self, repo, rev, prefix):
        oid = self.hub._resolve(repo, rev)
        if oid is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        out = []
        for path, e in sorted(repo.commits[oid].files.items()):
            if prefix and not path.startswith(prefix.rstrip("/") + "/"):
                continue
            item = {"type": "file", "path": path, "size": e.size,
                    "oid": e.oid if not e.lfs else git_blob_oid(f"version https://git-lfs.github.com/spec/v1\noid sha256:{e.oid}\nsize {e.size}\n".encode())}
            if e.lfs:
                item["lfs"] = {"oid": e.oid, "size": e.size, "pointerSize": 130}
            out.append(item)
        return self._send(200, out)

    def _resolve_file(self, repo_id, rev, path, user, head):
        hub = self.hub
        repo = hub.repos.get(repo_id)
        if not self._visible(repo, user):
            return self._error(404 if user else 401, "Repository not found", "RepoNotFound")
        oid = hub._resolve(repo, rev)
        if oid is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        e = repo.commits[oid].files.get(path)
        if e is None:
            return self._error(404, "Entry not found", "EntryNotFound")
        data = hub.lfs[e.oid] if e.lfs else e.content
        headers = {"X-Repo-Commit": oid, "ETag": f"\"{e.oid}\""}
        if e.lfs:
            headers["X-Linked-Etag"] = f"\"{e.oid}\""
            headers["X-Linked-Size"] = str(e.size)
        return self._send(200, raw=data, headers=headers, content_type="application/octet-stream", head=head)


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (bounded waits in tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
