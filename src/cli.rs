//! Command-line flags (clap) and the dispatch to each command.

use crate::commands;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Tandem: a highly available ledger platform — participants as active-passive replicas, a
/// synchronizer with active-active sequencers, a load balancer and a JSON API gateway.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start every replica of a topology as child processes, print where they listen and which
    /// replicas are active, and supervise them until Ctrl-C.
    Up(UpArgs),
    /// Run one replica of one node of a topology (what `tandem up` starts for each replica).
    Node(NodeArgs),
    /// Run the L7 load balancer of a topology.
    Lb(ConfigArgs),
    /// Run an HTTP JSON API gateway of a topology.
    Gateway(GatewayArgs),
    /// Talk to a replica's admin API: show replication status, hand leadership over.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Use a participant's Ledger API: parties, packages, commands, contracts and updates.
    Ledger(LedgerArgs),
    /// Run a benchmark and print its samples and a `key=value` summary line.
    #[command(subcommand)]
    Bench(BenchAll),
    /// Check a topology file and print what it describes.
    Check(ConfigArgs),
    /// Print a JWT for a user, signed with the (unsafe, development-only) HS256 secret of a
    /// topology's gateways, e.g. `curl -H "Authorization: Bearer $(tandem token --user participant_admin)"`.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user the token names (`sub`).
    #[arg(long, default_value = "participant_admin")]
    pub user: String,
    /// Topology whose first gateway's `hs256_secret` signs; the built-in default topology when
    /// omitted.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Topology file; the built-in default topology (examples/topology.toml) when omitted.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Put every node's database on this Postgres server (one database per node, created if
    /// missing) instead of the file's storage URLs, e.g. postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Where logs and the effective topology go, and the built-in topology's SQLite files.
    #[arg(long, default_value = "tandem-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Topology file.
    #[arg(long)]
    pub config: PathBuf,
    /// Name of the logical node, e.g. participant1, sequencer, mediator, topology-manager.
    #[arg(long)]
    pub node: String,
    /// Index of the replica in the node's `replicas` list.
    #[arg(long, default_value_t = 0)]
    pub replica: u32,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Topology file.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Topology file.
    #[arg(long)]
    pub config: PathBuf,
    /// Which gateway of the file to run.
    #[arg(long)]
    pub name: Option<String>,
}

/// Which replica(s) an admin command talks to.
#[derive(Debug, Args)]
pub struct AdminTarget {
    /// Admin address of one replica (host:port).
    #[arg(long, conflicts_with_all = ["config", "node"])]
    pub addr: Option<SocketAddr>,
    /// Topology file to find the node's admin addresses in.
    #[arg(long, requires = "node")]
    pub config: Option<PathBuf>,
    /// Node name in the topology file.
    #[arg(long, requires = "config")]
    pub node: Option<String>,
    /// Replica index; all replicas of the node when omitted (status only).
    #[arg(long)]
    pub replica: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Show each replica's role, epoch, health and the node's members.
    Status {
        #[command(flatten)]
        target: AdminTarget,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Hand the active replica's leadership to a standby. Fails, and the replica stays active,
    /// when no standby takes over in time. With --config/--node, finds the active replica itself.
    SetPassive {
        #[command(flatten)]
        target: AdminTarget,
        /// How long to wait for a standby, in ms (default: the node's handover_timeout_ms).
        #[arg(long)]
        timeout_ms: Option<u32>,
    },
    /// The synchronizer's topology from its active topology manager: members and party hostings
    /// in effect (now, or at --at-us), or every sequenced transaction with --transactions.
    Topology {
        #[command(flatten)]
        target: TopologyTarget,
        /// Microseconds since the epoch; now when omitted.
        #[arg(long)]
        at_us: Option<i64>,
        /// List the sequenced transactions instead of the state.
        #[arg(long)]
        transactions: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Topology transactions that still lack signatures (e.g. participants asking to join a
    /// closed synchronizer).
    Proposals {
        #[command(flatten)]
        target: TopologyTarget,
    },
    /// Propose hosting a party on several participants, signed by this participant:
    /// `--host PAR::participant2::1220…=confirmation` for each host (submission, confirmation
    /// or observation).
    HostParty {
        #[command(flatten)]
        target: ParticipantTarget,
        #[arg(long)]
        party: String,
        #[arg(long)]
        threshold: u32,
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
    /// Party hosting proposals waiting for this participant's signature.
    HostingProposals {
        #[command(flatten)]
        target: ParticipantTarget,
    },
    /// Sign a party hosting proposal as this participant.
    AuthorizeHosting {
        #[command(flatten)]
        target: ParticipantTarget,
        #[arg(long)]
        hash: String,
    },
    /// Connect a participant to its synchronizer (for `manual_connect` participants).
    Connect {
        #[command(flatten)]
        target: ParticipantTarget,
        #[arg(long, default_value = "synchronizer1")]
        synchronizer: String,
    },
    /// Disconnect a participant from its synchronizer.
    Disconnect {
        #[command(flatten)]
        target: ParticipantTarget,
        #[arg(long, default_value = "synchronizer1")]
        synchronizer: String,
    },
    /// Sign a proposal as the topology manager (admit a participant to a closed synchronizer).
    Authorize {
        #[command(flatten)]
        target: TopologyTarget,
        /// The proposal's hash, as `tandem admin proposals` lists it.
        #[arg(long)]
        hash: String,
    },
}

/// A participant's admin address (a replica, or the lb's admin frontend for the participant).
#[derive(Debug, Args)]
pub struct ParticipantTarget {
    /// Admin address, e.g. 127.0.0.1:4101 (the lb's admin frontend for participant1).
    #[arg(long, default_value = "127.0.0.1:4101")]
    pub addr: SocketAddr,
}

/// Where the topology manager is: a topology file (its replicas are tried in turn) or one
/// replica's admin address.
#[derive(Debug, Args)]
pub struct TopologyTarget {
    /// Topology file naming the topology manager's replicas.
    #[arg(long, conflicts_with = "addr", required_unless_present = "addr")]
    pub config: Option<PathBuf>,
    /// Admin address of one topology manager replica (host:port).
    #[arg(long)]
    pub addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Storage backend of the replicated node.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// Postgres server to use with --backend postgres; a throwaway cluster is started when omitted.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Number of trials.
    #[arg(long, default_value_t = 20)]
    pub trials: u32,
    /// Replicas of the benchmarked node.
    #[arg(long, default_value_t = 3)]
    pub replicas: u32,
}

#[derive(Debug, Subcommand)]
pub enum BenchAll {
    #[command(flatten)]
    Replication(BenchCommand),
    /// Drive gRPC calls through `tandem lb` and HAProxy side by side; measure throughput,
    /// latency and failover detection.
    Lb(commands::lb::BenchLbArgs),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// SIGKILL the active replica of a replicated node, N times, and measure the time until a
    /// standby's /health answers 200.
    Failover(BenchArgs),
    /// `set-passive` on the active replica, N times, and measure the time until a standby's
    /// /health answers 200.
    Handover(BenchArgs),
    /// Start N sequencer processes over one database, have M members send concurrently, and
    /// measure events per second and send-to-deliver latency.
    Sequencer(BenchSequencerArgs),
    /// Start a whole topology (synchronizer and participants), then have clients issue and
    /// transfer Ious through SubmitAndWait; measure transactions per second and latency.
    Ledger(BenchLedgerArgs),
    /// Start a participant and a `tandem gateway` in front of it, load `--contracts` contracts,
    /// then measure cached queries and creates through the gateway (requests per second and
    /// latency).
    Gateway(BenchGatewayArgs),
}

#[derive(Debug, Args)]
pub struct BenchGatewayArgs {
    /// Storage backend of every node (the nodes run inside the benchmark process; the gateway
    /// is a child process of its own).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// Active contracts in the gateway's cache while querying.
    #[arg(long, default_value_t = 10_000)]
    pub contracts: u32,
    /// Concurrent HTTP/1.1 keep-alive clients.
    #[arg(long, default_value_t = 16)]
    pub clients: u32,
    /// Concurrent clients of the create phase (default: `--clients`); 1 measures a create's
    /// latency on an otherwise idle ledger.
    #[arg(long)]
    pub create_clients: Option<u32>,
    /// How long each phase (queries, then creates) runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// What drives the query phase: `wrk` (installed if missing) or this process's own client.
    #[arg(long, value_enum, default_value = "wrk")]
    pub load: QueryLoad,
    /// The gateway's `workers` (threads serving connections); 0: its default, one per CPU.
    #[arg(long, default_value_t = 0)]
    pub gateway_workers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryLoad {
    Wrk,
    Builtin,
}

#[derive(Debug, Args)]
pub struct BenchLedgerArgs {
    /// Storage backend of every node.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// Postgres server to use with --backend postgres; a throwaway cluster is started when omitted.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Participants (clients are spread over them; transfers go to the next one's party).
    #[arg(long, default_value_t = 2)]
    pub participants: u32,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: u32,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// Ledger API endpoint: a participant replica or the lb's frontend for it.
    #[arg(long, default_value = "http://127.0.0.1:4001")]
    pub url: String,
    /// The user commands are submitted as; with no `--token`, the user a development token is
    /// minted for.
    #[arg(long, default_value = "participant_admin")]
    pub user: String,
    /// The bearer JWT sent with every call. Without it, a one-hour development token for
    /// `--user` is signed with the HS256 secret of `--config` (or the built-in topology).
    #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Topology whose (unsafe) HS256 secret signs the development token.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Allocate or list parties.
    #[command(subcommand)]
    Parties(PartiesCommand),
    /// Upload or list packages.
    #[command(subcommand)]
    Packages(PackagesCommand),
    /// Create a contract: `--template '#iou:Iou:Iou' --args '{...}'`.
    Create {
        #[arg(long)]
        act_as: Vec<String>,
        #[arg(long)]
        template: String,
        /// The create arguments as JSON (Canton JSON API value encoding).
        #[arg(long)]
        args: String,
        /// Deduplicates retries; generated when omitted.
        #[arg(long)]
        command_id: Option<String>,
    },
    /// Exercise a choice on a contract.
    Exercise {
        #[arg(long)]
        act_as: Vec<String>,
        #[arg(long)]
        template: String,
        #[arg(long)]
        contract_id: String,
        #[arg(long)]
        choice: String,
        /// The choice argument as JSON.
        #[arg(long, default_value = "{}")]
        args: String,
        #[arg(long)]
        command_id: Option<String>,
    },
    /// The active contracts some parties see.
    Acs {
        #[arg(long, required = true)]
        party: Vec<String>,
    },
    /// The transactions some parties see, between two offsets.
    Updates {
        #[arg(long, required = true)]
        party: Vec<String>,
        /// Exclusive start offset.
        #[arg(long, default_value_t = 0)]
        from: i64,
        /// Inclusive end offset; the ledger end when omitted.
        #[arg(long)]
        to: Option<i64>,
    },
    /// The ledger end offset.
    End,
}

#[derive(Debug, Subcommand)]
pub enum PartiesCommand {
    /// Allocate `HINT::<participant fingerprint>`; the user may act as it.
    Allocate {
        hint: String,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum PackagesCommand {
    /// Upload a package document (YAML, or JSON for `.json` files).
    Upload {
        file: PathBuf,
    },
    List,
}

#[derive(Debug, Args)]
pub struct BenchSequencerArgs {
    /// Storage backend of the sequencers' shared database.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// Postgres server to use with --backend postgres; a throwaway cluster is started when omitted.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Sequencer processes.
    #[arg(long, default_value_t = 3)]
    pub sequencers: u32,
    /// Members sending and receiving, spread over the sequencers.
    #[arg(long, default_value_t = 6)]
    pub members: u32,
    /// Messages each member sends.
    #[arg(long, default_value_t = 2_000)]
    pub messages: u32,
    /// Sends each member keeps in flight.
    #[arg(long, default_value_t = 16)]
    pub in_flight: u32,
}

pub fn init_tracing(cli: &Cli) {
    // Child replicas log at info to their log files; interactive commands stay quiet. Colours
    // only on a terminal: log files and pipes get plain text (and `NO_COLOR` turns them off).
    let default = match cli.command {
        Command::Node(_) | Command::Lb(_) | Command::Gateway(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => commands::up::run(args).await,
        Command::Node(args) => commands::node::run(args).await,
        Command::Lb(args) => commands::lb::run(args).await,
        Command::Gateway(args) => commands::gateway::run(&args).await,
        Command::Admin(command) => commands::admin::run(command).await,
        Command::Ledger(args) => commands::ledger::run(args).await,
        Command::Bench(BenchAll::Replication(command)) => commands::bench::run(command).await,
        Command::Bench(BenchAll::Lb(args)) => commands::lb::bench(args).await,
        Command::Check(args) => commands::check(&args.config),
        Command::Token(args) => commands::token(&args),
    }
}
