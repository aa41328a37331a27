"""The engine's JVM: one Spark with Hive support, each step run through the Spark SQL CLI's own code."""

from __future__ import annotations

import itertools
import json
import os
import re
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The class spark-sql runs: SparkSQLEnv names the application after it, as a cold run does.
CLI_DRIVER = "org.apache.spark.sql.hive.thriftserver.SparkSQLCLIDriver"
PRIMARY_RESOURCE = "pyspark-shell"  # spark-submit's name for "start PySpark's py4j gateway server"
EXIT_FAILURE = 1  # SparkExitCode.EXIT_FAILURE: main's answer when the arguments do not parse
ERROR_PATH_NOT_FOUND = 3  # SparkExitCode.ERROR_PATH_NOT_FOUND
OUTPUT_BUFFER = 64 * 1024
# JVM-wide counters whose values a step can print (`EXPLAIN`: `a#8L`, `[plan_id=40]`, CTE ids,
# `ParallelCollectionRDD[0]`): each step starts them where a cold spark-sql has them when it starts
# the file. Fields of Scala objects, and the SparkContext's RDD ids.
COUNTERS = (
    ("org.apache.spark.sql.catalyst.expressions.NamedExpression$", "curId"),
    ("org.apache.spark.sql.catalyst.plans.logical.CTERelationDef$", "curId"),
    ("org.apache.spark.sql.catalyst.expressions.objects.LambdaVariable$", "curId"),
    ("org.apache.spark.sql.catalyst.expressions.UnresolvedNamedLambdaVariable$", "nextVarNameId"),
    ("org.apache.spark.sql.execution.SparkPlan$", "nextPlanId"),
)


# The CLI's own `processCmd` answers these by ending its JVM (`SparkSQLCLIDriver.exit(0)`).
ENDS_THE_JVM = ("quit", "exit")
# Java's String.trim and split("\\s+") whitespace, not Python's.
JAVA_TRIM = "".join(chr(code) for code in range(33))
JAVA_SPACE = re.compile(r"[ \t\n\x0b\f\r]+")
LINE_END = re.compile(r"\r\n|\r|\n")  # BufferedReader.readLine's line terminators
MAX_SOURCE_DEPTH = 16
HIVERC = ".hiverc"  # CliDriver.HIVERCFILE
LAUNCH_ONLY = ("_PYSPARK_DRIVER_CONN_INFO_PATH",)  # the engine's own, never a cold JVM's


class EngineStartError(Exception):
    """The JVM did not come up (no Java, a broken install, the metastore held by another process)."""


class RunCold(Exception):
    """The step does something a long-lived JVM cannot undo; the message says what, in one line."""


def _read_conn_info(path: Path) -> tuple[int, str]:
    # PySpark's conn-info file: the gateway port as a 4-byte int, then the secret, length-prefixed.
    data = path.read_bytes()
    port, length = struct.unpack(">ii", data[:8])
    return port, data[8 : 8 + length].decode()


def launch(
    spark_submit: str,
    submit_args: Sequence[str],
    env: Mapping[str, str],
    run_dir: Path,
    *,
    log: Any,
    timeout: float = 300.0,
) -> tuple[subprocess.Popen[bytes], Any]:
    """Start Spark's py4j gateway JVM as PySpark does, and connect to it with a pinned-thread client.

    The same steps as `pyspark.java_gateway.launch_gateway`, except that the JVM is started before
    py4j is imported (the imports overlap the JVM's start) and its readiness is polled every 10 ms.
    """
    conn_info = run_dir / "gateway-conn-info"
    conn_info.unlink(missing_ok=True)
    process = subprocess.Popen(
        [spark_submit, *submit_args, PRIMARY_RESOURCE],
        # The JVM exits when this pipe closes: the gateway server reads stdin until its end, so the
        # JVM never outlives the engine, even one killed with SIGKILL.
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=log,
        env={**env, "_PYSPARK_DRIVER_CONN_INFO_PATH": str(conn_info)},
    )
    from py4j.clientserver import ClientServer, JavaParameters, PythonParameters  # type: ignore[import-untyped]  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while not conn_info.exists():
        if process.poll() is not None:
            raise EngineStartError(f"Spark's JVM exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            process.kill()
            raise EngineStartError(f"Spark's JVM was not ready after {timeout:.0f} s")
        time.sleep(0.01)
    time.sleep(0.005)  # the file is renamed into place once complete; a short grace for slow disks
    port, secret = _read_conn_info(conn_info)
    conn_info.unlink(missing_ok=True)
    # ClientServer pins each Python thread to one JVM thread: Hive's SessionState is thread-local,
    # so every call of one step must come from the same Python thread.
    gateway = ClientServer(
        java_parameters=JavaParameters(port=port, auth_token=secret, auto_convert=True),
        python_parameters=PythonParameters(port=0, eager_load=False),
    )
    return process, gateway


def _module(jvm: Any, name: str) -> Any:
    """A Scala object (`Foo$.MODULE$`) seen through py4j."""
    package, _, cls = name.rpartition(".")
    view = jvm
    for part in package.split("."):
        view = getattr(view, part)
    return getattr(getattr(view, cls + "$"), "MODULE$")


class CliEngine:
    """Spark SQL CLI code in a long-lived JVM, driven through py4j.

    SparkSQLEnv once; then for each step `SparkSQLCLIDriver.main`'s per-invocation setup, call for
    call, on a fresh session whose result and error streams are the step's own.

    Every method that touches a step must be called from one and the same Python thread.
    """

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.jvm = gateway.jvm
        self._env = _module(self.jvm, "org.apache.spark.sql.hive.thriftserver.SparkSQLEnv")
        self._root: Any = None
        self._system_out: Any = None
        self._system_err: Any = None
        self._counters: list[tuple[Any, Any]] = []
        self._marks: list[int] | None = None
        self._steps = itertools.count(1)
        self._job_group: str | None = None
        self._properties_set: list[str] = []

    def start(self) -> None:
        """SparkSQLEnv.init(): the SparkSession with Hive support that spark-sql makes at start-up."""
        self._env.init()
        self._root = self._env.sqlContext()
        self._system_out = self.jvm.System.out
        self._system_err = self.jvm.System.err
        self._counters = [self._counter(cls, field) for cls, field in COUNTERS]
        self._counters.append(self._counter("org.apache.spark.SparkContext", "nextRddId", self.spark_context))
        self._context_loader = self.jvm.Thread.currentThread().getContextClassLoader()
        self._client = self._root.sparkSession().sharedState().externalCatalog().unwrapped().client()
        self._client_state = self._field("org.apache.spark.sql.hive.client.HiveClientImpl", "state")
        self._engine_state = self._client_state.get(self._client)
        self._start_environment()

    def _field(self, class_name: str, field_name: str) -> Any:
        """A declared field of a class, made accessible (Spark opens java.base to unnamed modules)."""
        field = self.jvm.java.lang.Class.forName(class_name).getDeclaredField(field_name)
        field.setAccessible(True)
        return field

    def _start_environment(self) -> None:
        """Handles on the JVM's environment, which Java reads once at start-up and never again.

        `System.getenv` and `ProcessBuilder` (so `${env:NAME}` and `!` commands) read
        ProcessEnvironment's one map. The engine starts long before a step: to see the runner's
        environment as a cold spark-sql does, each step replaces that map's contents with its own
        and the engine's are put back after it. Safe because steps run one at a time and nothing
        else in the engine forks or reads variables a step may change while one runs; replacing
        in place (put and retain, never clear) leaves no moment with an empty environment.
        """
        jvm = self.jvm
        unmodifiable = self._field("java.lang.ProcessEnvironment", "theUnmodifiableEnvironment").get(None)
        # The StringEnvironment view over ProcessEnvironment.theEnvironment: a mutable Map<String,String>.
        environment = self._field("java.util.Collections$UnmodifiableMap", "m").get(unmodifiable)
        handles, method_type = jvm.java.lang.invoke.MethodHandles, jvm.java.lang.invoke.MethodType
        lookup = handles.publicLookup()
        lang, util = jvm.java.lang, jvm.java.util
        map_class = lang.Class.forName("java.util.Map")
        collection_class = lang.Class.forName("java.util.Collection")
        # Through the public interfaces: the view's own class is private to java.lang.
        key_set = lookup.findVirtual(
            map_class, "keySet", method_type.methodType(lang.Class.forName("java.util.Set"))
        )
        keys = key_set.bindTo(environment).invokeWithArguments([])
        self._put_all = lookup.findVirtual(
            map_class, "putAll", method_type.methodType(lang.Void.TYPE, map_class)
        )
        self._put_all = self._put_all.bindTo(environment)
        retain = lookup.findVirtual(
            collection_class, "retainAll", method_type.methodType(lang.Boolean.TYPE, collection_class)
        )
        self._retain_keys = retain.bindTo(keys)
        self._json = jvm.com.fasterxml.jackson.databind.ObjectMapper()
        self._hash_map = lang.Class.forName("java.util.HashMap")
        started = json.loads(self._json.writeValueAsString(jvm.System.getenv()))
        self._engine_environment = util.HashMap(jvm.System.getenv())
        # What spark-submit's scripts add (SPARK_ENV_LOADED, SPARK_SCALA_VERSION...) to what they
        # were given: a cold spark-sql's scripts add the same to the runner's environment.
        launched = os.environ  # the engine started its JVM with its own environment (server.py)
        self._launcher_added = {
            name: value
            for name, value in started.items()
            if launched.get(name) != value and name not in LAUNCH_ONLY
        }

    def _set_environment(self, environment: Any) -> None:
        self._put_all.invokeWithArguments([environment])
        self._retain_keys.invokeWithArguments([environment.keySet()])

    def _counter(self, class_name: str, field_name: str, owner: Any = None) -> tuple[Any, Any]:
        """Method handles that read and set an atomic counter: a private field of `owner` or a Scala object.

        Handles, because py4j hands any java.lang.Number to Python as its value: the AtomicLong
        itself never reaches Python, so its get and set are composed on the Java side.
        """
        jvm = self.jvm
        handles, method_type = jvm.java.lang.invoke.MethodHandles, jvm.java.lang.invoke.MethodType
        cls = jvm.java.lang.Class.forName(class_name)
        field = cls.getDeclaredField(field_name)
        field.setAccessible(True)  # unreflectGetter then checks no access
        lookup = handles.publicLookup()
        atomic = field.getType()
        lang = jvm.java.lang
        value = (lang.Long if atomic.getName().endswith("AtomicLong") else lang.Integer).TYPE
        void = lang.Void.TYPE
        counter = lookup.unreflectGetter(field).bindTo(owner or cls.getField("MODULE$").get(None))
        get = lookup.findVirtual(atomic, "get", method_type.methodType(value))
        read = handles.filterReturnValue(counter, get)
        write = handles.collectArguments(
            lookup.findVirtual(atomic, "set", method_type.methodType(void, value)), 0, counter
        )
        # py4j sends a small Python int as an Integer: take an int, widen it to the counter's type.
        write = handles.explicitCastArguments(write, method_type.methodType(void, lang.Integer.TYPE))
        return read, write

    def _rewind_counters(self) -> None:
        """The first step marks where the counters stand as its file starts; every later one rewinds there.

        The first step of an engine is a cold run's twin up to here: both ran the same start-up and
        per-invocation code, so its marks are a cold run's. Reusing ids across steps is safe: no plan
        outlives its step (a new session each, cached data and global temp views cleared).
        """
        if self._marks is None:
            self._marks = [int(read.invokeWithArguments([])) for read, _ in self._counters]
            return
        for (_, write), mark in zip(self._counters, self._marks, strict=True):
            write.invokeWithArguments([mark])

    @property
    def spark_context(self) -> Any:
        return self._env.sparkContext()

    def _print_stream(self, path: Path) -> Any:
        jvm = self.jvm
        sink = jvm.java.io.BufferedOutputStream(jvm.java.io.FileOutputStream(str(path)), OUTPUT_BUFFER)
        return jvm.java.io.PrintStream(sink, True, "UTF-8")

    def run_file(
        self,
        script: Path,
        variables: Mapping[str, str],
        stdout: Path,
        stderr: Path,
        environment: Mapping[str, str] | None = None,
    ) -> int:
        """Run `script` as `spark-sql --hivevar NAME=VALUE ... -f script` would; its exit code.

        `environment` is the one a cold spark-sql would be started with. RunCold, before the step
        has printed anything, when it does what only a JVM of its own can (`quit`, `ADD JAR`).
        """
        from py4j.protocol import Py4JJavaError  # type: ignore[import-untyped]  # noqa: PLC0415

        jvm = self.jvm
        if environment is not None:
            cold = {**environment, **self._launcher_added}
            self._set_environment(self._json.readValue(json.dumps(cold), self._hash_map))
        out = self._print_stream(stdout)
        err = self._print_stream(stderr)
        try:
            jvm.System.setOut(out)
            jvm.System.setErr(err)
            return self._main(script, variables, out, err) & 0xFF
        except Py4JJavaError as error:
            # What a cold spark-sql's JVM prints when main throws: never a silent exit 1.
            err.print('Exception in thread "main" ')
            error.java_exception.printStackTrace(err)
            return EXIT_FAILURE
        finally:
            jvm.System.setOut(self._system_out)
            jvm.System.setErr(self._system_err)
            self._forget_step()
            out.close()
            err.close()
            if environment is not None:
                self._set_environment(self._engine_environment)

    def _main(self, script: Path, variables: Mapping[str, str], out: Any, err: Any) -> int:
        """`SparkSQLCLIDriver.main` (Spark 3.5.6) after SparkSQLEnv exists, minus its System.exit."""
        from py4j.java_gateway import get_field  # type: ignore[import-untyped]  # noqa: PLC0415

        jvm = self.jvm
        gateway = self.gateway
        argv = [arg for name, value in variables.items() for arg in ("--hivevar", f"{name}={value}")]
        argv += ["-f", str(script)]
        args = gateway.new_array(jvm.java.lang.String, len(argv))
        for index, arg in enumerate(argv):
            args[index] = arg

        oproc = jvm.org.apache.hadoop.hive.cli.OptionsProcessor()
        if not oproc.process_stage1(args):
            return EXIT_FAILURE
        spark_conf = jvm.org.apache.spark.SparkConf(True)
        hadoop_util = _module(jvm, "org.apache.spark.deploy.SparkHadoopUtil").get()
        hadoop_conf = hadoop_util.newConfiguration(spark_conf)
        extra = _module(jvm, "org.apache.spark.sql.hive.HiveUtils").formatTimeVarsForHiveClient(hadoop_conf)
        client_impl = _module(jvm, "org.apache.spark.sql.hive.client.HiveClientImpl")
        cli_conf = client_impl.newHiveConf(
            spark_conf, hadoop_conf, extra, getattr(client_impl, "newHiveConf$default$4")()
        )
        session_state = jvm.org.apache.hadoop.hive.cli.CliSessionState(cli_conf)
        self._point(session_state, out, err)
        if not oproc.process_stage2(session_state):
            return 64  # ERROR_MISUSE_SHELL_BUILTIN
        conf = session_state.getConf()
        conf.setClassLoader(jvm.Thread.currentThread().getContextClassLoader())
        overridden = session_state.getOverriddenConfigurations()
        for entry in get_field(session_state, "cmdProperties").entrySet():
            key, value = entry.getKey().toString(), entry.getValue().toString()
            if key != "javax.jdo.option.ConnectionURL":
                conf.set(key, value)
                overridden.put(key, value)
        shared = _module(jvm, "org.apache.spark.sql.internal.SharedState")
        warehouse = shared.resolveWarehousePath(
            spark_conf, conf, getattr(shared, "resolveWarehousePath$default$3")()
        )
        shared.setWarehousePathConf(spark_conf, conf, shared.qualifyWarehousePath(conf, warehouse))
        jvm.org.apache.hadoop.hive.ql.session.SessionState.setCurrentSessionState(session_state)
        system = jvm.System
        hive_conf = {}
        for entry in overridden.entrySet():
            key = entry.getKey()
            prop = "spark.hadoop." + key
            if system.getProperty(prop) is None:
                system.setProperty(prop, entry.getValue())
                self._properties_set.append(prop)  # a cold JVM's ends with it: taken back after the step
            hive_conf[key] = system.getProperty(prop)

        # A fresh session per step, where the CLI looks for it: no SET, view, database or variable
        # of an earlier step survives, as none survives a cold spark-sql's exit.
        session = self._root.sparkSession().newSession()
        getattr(self._env, "sqlContext_$eq")(session.sqlContext())
        # The metastore client's Hive session is the step's CliSessionState, as in a cold spark-sql
        # (where it exists before the client): every metastore call makes the client's session the
        # thread's current one, and Hive's `!` and `source` cast that one to CliSessionState. Its
        # `SET hive...` values, added resources and scratch state stay with the step.
        self._client_state.set(self._client, session_state)
        cli = jvm.org.apache.spark.sql.hive.thriftserver.SparkSQLCLIDriver()
        why = self._init_files_cold_reason(cli) or self._cold_reason(cli, script, 0)
        if why is not None:
            raise RunCold(why)
        # Where SparkSQLEnv.init, in the constructor, points the metastore client's Hive session at
        # System.out/err. After any metastore call that session is the thread's current one, so the
        # CLI's "Time taken" and Hive's own messages go there: to this step's streams.
        self._point_metastore_client(out, err)
        cli.setHiveVariables(oproc.getHiveVariables())
        hive_conf_vars = getattr(jvm.org.apache.hadoop.hive.conf, "HiveConf$ConfVars")
        # HiveConf.getVar(conf, var) through its instance form: py4j cannot always tell a static
        # method from the instance method of the same name.
        aux_jars = conf.getVar(hive_conf_vars.HIVEAUXJARS)
        if jvm.org.apache.commons.lang3.StringUtils.isNotBlank(aux_jars):
            loader = self._env.sqlContext().sessionState().resourceLoader()
            for jar in jvm.org.apache.commons.lang3.StringUtils.split(aux_jars, ","):
                loader.addJar(jar)
        session_state.getConf().setClassLoader(self._env.sqlContext().sharedState().jarClassLoader())
        self._point(session_state, out, err)
        for key, value in hive_conf.items():
            if key != "hive.metastore.warehouse.dir":
                self._env.sqlContext().setConf(key, value)
        database = get_field(session_state, "database")
        if database is not None:
            self._env.sqlContext().sql("USE " + database)
        failed = self._process_init_files(cli, session_state)
        if failed:
            return failed
        cli.printMasterAndAppId()
        self._rewind_counters()
        # The step's jobs in a group of their own, cancelled with an interrupt: a stopped or timed-out
        # step's running tasks end (a task in Thread.sleep or a blocking read) rather than run on.
        self._job_group = f"nightshift-step-{next(self._steps)}"
        self.spark_context.setJobGroup(self._job_group, str(script), True)
        try:
            return int(cli.processFile(str(script)))
        except Exception as error:  # py4j's Py4JJavaError: the Java exception is its first argument
            java_error = getattr(error, "java_exception", None)
            if java_error is not None and java_error.getClass().getName() == "java.io.FileNotFoundException":
                err.println(f"Could not open input file for reading. ({java_error.getMessage()})")
                return ERROR_PATH_NOT_FOUND
            raise

    def _point(self, session_state: Any, out: Any, err: Any) -> None:
        from py4j.java_gateway import set_field  # noqa: PLC0415

        set_field(session_state, "in", getattr(self.jvm.System, "in"))
        set_field(session_state, "out", self.jvm.java.io.PrintStream(out, True, "UTF-8"))
        set_field(session_state, "info", self.jvm.java.io.PrintStream(err, True, "UTF-8"))
        set_field(session_state, "err", self.jvm.java.io.PrintStream(err, True, "UTF-8"))

    def _point_metastore_client(self, out: Any, err: Any) -> None:
        client = self._root.sparkSession().sharedState().externalCatalog().unwrapped().client()
        client.setOut(self.jvm.java.io.PrintStream(out, True, "UTF-8"))
        client.setInfo(self.jvm.java.io.PrintStream(err, True, "UTF-8"))
        client.setError(self.jvm.java.io.PrintStream(err, True, "UTF-8"))

    def _cold_reason(self, cli: Any, script: Path, depth: int) -> str | None:
        """Why `script` (and what it sources) must run in a JVM of its own, if it must.

        The file is cut into commands by the CLI's own code, as `processFile` would: lines that
        start with `--` dropped (Hive's processReader), the rest split by `splitSemiColon`, pieces
        ending in a backslash joined with the next (processLine).
        """
        try:
            data = script.read_bytes()
        except OSError:
            return None  # processFile says so, as in a cold run
        try:
            text = data.decode(self.charset, errors="replace")
        except LookupError:  # a charset Python does not name; the runner gives the JVM UTF-8
            text = data.decode("utf-8", errors="replace")
        lines = LINE_END.split(text)
        if lines and lines[-1] == "":
            lines.pop()  # readLine reports no empty line after the last terminator
        joined = "".join(line + "\n" for line in lines if not line.startswith("--"))
        if "\0" in joined:
            return None  # not SQL a cold spark-sql would run either; let it fail as it does
        pieces = self.jvm.java.lang.String.join("\0", cli.splitSemiColon(joined)).split("\0")
        command = ""
        for piece in pieces:
            if piece.endswith("\\"):
                command += piece[:-1] + ";"
                continue
            command, one = "", command + piece
            trimmed = one.strip(JAVA_TRIM)
            if not trimmed:
                continue
            first = JAVA_SPACE.split(trimmed)[0].lower()
            if trimmed.lower() in ENDS_THE_JVM:
                return f"`{trimmed}` ends the JVM it runs in: the step runs in a JVM of its own"
            if trimmed.startswith("!"):
                # Java starts a process with the JVM's native environment unless told otherwise
                # (Hive's ShellCmdExecutor does not tell it), and that is the engine's, not the step's.
                return (
                    f"`{trimmed[:40]}` would start a process with the engine's environment, not the step's:"
                    " the step runs in a JVM of its own"
                )
            if first == "add":
                return (
                    f"`{trimmed[:40]}` adds to the JVM what no step after it may see:"
                    " the step runs in a JVM of its own"
                )
            if first == "source":
                why = self._cold_reason_of_source(cli, trimmed[len(first) :].strip(JAVA_TRIM), depth)
                if why is not None:
                    return why
        return None

    def _init_files(self) -> list[tuple[Path, bool]]:
        """The `.hiverc` files CliDriver.processInitFiles (Hive 2.3) runs before every step, in its order.

        Read from the step's environment (set before this is asked) and the JVM's user.home, as a
        cold spark-sql reads them; True marks $HIVE_HOME/bin/.hiverc, which Hive calls deprecated.
        """
        system = self.jvm.System
        places = [
            (system.getenv("HIVE_HOME"), ("bin", HIVERC), True),
            (system.getenv("HIVE_CONF_DIR"), (HIVERC,), False),
            (system.getProperty("user.home"), (HIVERC,), False),
        ]
        return [
            (Path(base, *names), deprecated)
            for base, names, deprecated in places
            if base is not None and Path(base, *names).exists()
        ]

    def _init_files_cold_reason(self, cli: Any) -> str | None:
        for path, _ in self._init_files():
            why = self._cold_reason(cli, path, 1)
            if why is not None:
                return f"{path} runs before every step: {why}"
        return None

    def _process_init_files(self, cli: Any, session_state: Any) -> int:
        """processInitFiles, but a failing file's exit code is returned where Hive calls System.exit.

        A cold spark-sql ends with that code before the step runs; the engine must not end with it.
        """
        silent = session_state.getIsSilent()
        session_state.setIsSilent(True)
        try:
            for path, deprecated in self._init_files():
                code = int(cli.processFile(str(path)))
                if code != 0:
                    return code
                if deprecated:
                    self.jvm.org.apache.hadoop.hive.ql.session.SessionState.getConsole().printInfo(
                        "Putting the global hiverc in $HIVE_HOME/bin/.hiverc is deprecated. "
                        "Please use $HIVE_CONF_DIR/.hiverc instead."
                    )
        finally:
            session_state.setIsSilent(silent)
        return 0

    def _cold_reason_of_source(self, cli: Any, name: str, depth: int) -> str | None:
        if "${" in name or depth >= MAX_SOURCE_DEPTH:
            return f"`source {name}` may hold `quit` or `ADD JAR`, unseen: the step runs in a JVM of its own"
        return self._cold_reason(cli, Path(name), depth + 1)

    @property
    def charset(self) -> str:
        """The JVM's default charset: how processFile reads a step."""
        if not hasattr(self, "_charset"):
            self._charset = str(self.jvm.java.nio.charset.Charset.defaultCharset().name())
        return self._charset

    def _forget_step(self) -> None:
        """What a step leaves in state shared by sessions: global temp views and cached data."""
        if self._job_group is not None:
            self.spark_context.clearJobGroup()
            self._job_group = None
        system = self.jvm.System
        for prop in self._properties_set:
            system.clearProperty(prop)
        self._properties_set = []
        self._client_state.set(self._client, self._engine_state)
        session = self._env.sqlContext().sparkSession()
        session.sharedState().globalTempViewManager().clear()
        # Blocks removed before the next step reuses RDD ids: no stale cached block can match one.
        java_context = self.jvm.org.apache.spark.api.java.JavaSparkContext(self.spark_context)
        persistent = java_context.getPersistentRDDs()
        for rdd in persistent.values():
            rdd.unpersist(True)
        session.sharedState().cacheManager().clearCache()
        self._point_metastore_client(self._system_out, self._system_err)
        self.jvm.org.apache.hadoop.hive.ql.session.SessionState.detachSession()
        getattr(self._env, "sqlContext_$eq")(self._root)

    def cancel(self) -> None:
        """Cancel the running step's Spark jobs, interrupting their tasks: the CLI stops at its statement."""
        group = self._job_group
        if group is not None:
            self.spark_context.cancelJobGroup(group)
        else:
            self.spark_context.cancelAllJobs()

    def stop(self) -> None:
        self._env.stop(0)
