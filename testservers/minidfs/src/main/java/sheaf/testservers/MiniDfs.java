package sheaf.testservers;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import sun.misc.Signal;

/**
 * Starts a one-DataNode MiniDFSCluster on 127.0.0.1 for sheaf's integration tests, writes
 * {@code hdfs://127.0.0.1:PORT} to a ready-file once the cluster is up, and then blocks until
 * it gets SIGTERM or SIGINT, when it removes the ready-file, shuts the cluster down and
 * deletes its data.
 *
 * <pre>
 * java -cp ... sheaf.testservers.MiniDfs --port 9000 --base-dir /tmp/minidfs --ready-file /tmp/minidfs.ready
 *   [--datanodes 1] [--block-size 1048576] [--block-report-delay-ms 0]
 * </pre>
 *
 * Security is off (simple auth, no SASL on the data path), permission checks are off, and
 * the replication factor is 1. A client-side Hadoop configuration (core-site.xml and
 * hdfs-site.xml) for talking to this cluster is written to BASE_DIR/conf.
 */
public final class MiniDfs {
    private MiniDfs() {}

    private static void usage(String why) {
        System.err.println("minidfs: " + why);
        System.err.println("usage: MiniDfs --port N --base-dir DIR --ready-file FILE"
                + " [--datanodes N] [--block-size BYTES] [--block-report-delay-ms MS]");
        System.exit(2);
    }

    public static void main(String[] args) throws Exception {
        Integer port = null;
        String baseDir = null;
        String readyFile = null;
        int dataNodes = 1;
        long blockSize = 1L << 20;
        long reportDelayMs = 0;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) {
                usage("missing value after " + a);
            }
            String v = args[++i];
            switch (a) {
                case "--port": port = Integer.parseInt(v); break;
                case "--base-dir": baseDir = v; break;
                case "--ready-file": readyFile = v; break;
                case "--datanodes": dataNodes = Integer.parseInt(v); break;
                case "--block-size": blockSize = Long.parseLong(v); break;
                case "--block-report-delay-ms": reportDelayMs = Long.parseLong(v); break;
                default: usage("unknown argument " + a);
            }
        }
        if (port == null || baseDir == null || readyFile == null) {
            usage("--port, --base-dir and --ready-file are required");
        }

        File base = new File(baseDir).getAbsoluteFile();
        File ready = new File(readyFile).getAbsoluteFile();
        Files.deleteIfExists(ready.toPath());
        // Some Hadoop test utilities fall back to this property for scratch space.
        System.setProperty("test.build.data", new File(base, "build-data").getPath());
        System.setProperty("hadoop.tmp.dir", new File(base, "tmp").getPath());

        Configuration conf = new HdfsConfiguration();
        conf.set("hadoop.tmp.dir", new File(base, "tmp").getPath());
        conf.set("hadoop.security.authentication", "simple");
        conf.setBoolean("hadoop.security.authorization", false);
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setInt("dfs.replication", Math.min(dataNodes, 3));
        conf.setLong("dfs.blocksize", blockSize);
        // DataNodes report a finished block to the NameNode at once by default; a delay makes
        // the NameNode refuse the next block of a file until the report arrives
        // (NotReplicatedYetException), the race a busy cluster loses now and then.
        conf.setLong("dfs.blockreport.incremental.intervalMsec", reportDelayMs);
        // Everything on loopback; the DataNodes register as 127.0.0.1, which is the address
        // NameNode hands to clients for the data path.
        conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
        conf.set("dfs.namenode.http-address", "127.0.0.1:0");
        conf.set("dfs.datanode.address", "127.0.0.1:0");
        conf.set("dfs.datanode.http.address", "127.0.0.1:0");
        conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");
        // With a single DataNode a busy DataNode must still get new blocks.
        conf.setBoolean("dfs.namenode.redundancy.considerLoad", false);
        conf.setBoolean("dfs.client.block.write.replace-datanode-on-failure.enable", false);
        // Short timeouts: a test cluster that is going wrong should say so quickly.
        conf.setInt("dfs.heartbeat.interval", 1);
        conf.setInt("dfs.namenode.heartbeat.recheck-interval", 5000);
        conf.setInt("dfs.namenode.safemode.extension", 0);
        conf.setInt("ipc.client.connect.max.retries", 3);
        conf.setInt("ipc.client.connect.max.retries.on.timeouts", 3);
        conf.setInt("ipc.client.connect.timeout", 5000);
        conf.setInt("dfs.client.socket-timeout", 20000);
        conf.setInt("dfs.namenode.handler.count", 10);
        conf.setInt("dfs.datanode.handler.count", 3);
        conf.setBoolean("dfs.datanode.scan.period.hours.disabled", true);
        conf.setInt("dfs.datanode.scan.period.hours", -1);
        conf.setInt("dfs.datanode.directoryscan.interval", -1);

        long t0 = System.nanoTime();
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf, new File(base, "dfs"))
                .nameNodePort(port)
                .nameNodeHttpPort(0)
                .numDataNodes(dataNodes)
                .format(true)
                .manageNameDfsDirs(true)
                .manageDataDfsDirs(true)
                .waitSafeMode(true)
                .build();

        // SIGTERM/SIGINT only wake the main thread, which then shuts the cluster down while
        // the JVM is still fully alive: MiniDFSCluster.shutdown() unregisters Hadoop shutdown
        // hooks, which throws if it runs inside a JVM shutdown hook.
        CountDownLatch stop = new CountDownLatch(1);
        for (String name : new String[] {"TERM", "INT"}) {
            Signal.handle(new Signal(name), sig -> {
                System.err.println("minidfs: got SIG" + sig.getName());
                stop.countDown();
            });
        }

        cluster.waitActive();
        cluster.waitClusterUp();
        // A round trip through the real client proves the NameNode and DataNode both work.
        org.apache.hadoop.fs.FileSystem fs = cluster.getFileSystem();
        org.apache.hadoop.fs.Path probe = new org.apache.hadoop.fs.Path("/.minidfs-ready-probe");
        try (org.apache.hadoop.fs.FSDataOutputStream out = fs.create(probe, true)) {
            out.write("ok".getBytes(StandardCharsets.UTF_8));
        }
        fs.delete(probe, false);

        int nnPort = cluster.getNameNodePort();
        String url = "hdfs://127.0.0.1:" + nnPort;
        writeClientConf(new File(base, "conf"), url);

        Path tmp = new File(ready.getPath() + ".tmp").toPath();
        Files.createDirectories(ready.getParentFile().toPath());
        Files.write(tmp, (url + "\n").getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, ready.toPath(), StandardCopyOption.ATOMIC_MOVE);
        System.err.printf("minidfs: ready at %s (%d datanode(s), %.1f s)%n",
                url, dataNodes, (System.nanoTime() - t0) / 1e9);

        stop.await();
        System.err.println("minidfs: shutting down");
        Files.deleteIfExists(ready.toPath());
        int status = 0;
        try {
            cluster.shutdown(true);
        } catch (Throwable t) {
            System.err.println("minidfs: error while shutting down: " + t);
            status = 1;
        }
        System.err.println("minidfs: stopped");
        System.exit(status);
    }

    /** What a client needs to reach this cluster, as Hadoop configuration files. */
    private static void writeClientConf(File dir, String url) throws IOException {
        Files.createDirectories(dir.toPath());
        Configuration core = new Configuration(false);
        core.set("fs.defaultFS", url);
        core.set("hadoop.security.authentication", "simple");
        try (OutputStream out = new FileOutputStream(new File(dir, "core-site.xml"))) {
            core.writeXml(out);
        }
        Configuration hdfs = new Configuration(false);
        hdfs.set("dfs.replication", "1");
        hdfs.set("dfs.client.block.write.replace-datanode-on-failure.enable", "false");
        // A client whose NameNode is gone should give up in about a second, not retry for minutes.
        hdfs.set("dfs.client.failover.max.attempts", "1");
        hdfs.set("dfs.client.failover.sleep.base.millis", "100");
        hdfs.set("dfs.client.failover.sleep.max.millis", "500");
        try (OutputStream out = new FileOutputStream(new File(dir, "hdfs-site.xml"))) {
            hdfs.writeXml(out);
        }
    }
}
