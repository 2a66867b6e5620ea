"""The one error hierarchy of civicnet: transient (retry may help) or terminal (a person must act).

Every error civicnet raises on purpose is a `TransientError` or a `TerminalError`. The DAG tasks
translate them once (dags/task_policy.py): a terminal error fails the task without retries, a
transient one is retried by Airflow. Each class, its module, and what a person does about it
(tests/unit/schemas/test_error_tree.py keeps this drawing equal to the code; "also" names a
builtin base kept so that older `except` clauses still catch it):

CivicnetError (schemas.errors): catch it to catch every error civicnet raises on purpose
├── TransientError (schemas.errors): nothing at first: Airflow retries; if it persists, see below
│   ├── FilesUnavailableError (connectors.files): if it persists, check the drop folder's share and permissions
│   ├── RestUnavailableError (connectors.rest): if it persists, ask the department whether its API is up
│   ├── SqlUnavailableError (connectors.sql): if it persists, ask the department whether its database is up
│   ├── TapFailedError (connectors.singer): if it persists, read the tap's stderr lines in the message
│   ├── PayloadChangedError (warehouse.landing): nothing: the next pull takes the file as it is then
│   ├── NodeLockedError (warehouse.node): wait: another process writes the node, the retry comes after it
│   ├── ObjectStoreUnavailableError (warehouse.objectstore): start the object store, or fix its endpoint
│   ├── ServerUnreachableError (warehouse.pgnode): start the node's PostgreSQL server, or fix its URL (`civicnet nodes`)
│   ├── ServerNodeChangedError (warehouse.pgnode): nothing: another writer changed the node, the retry reads it again
│   └── AirflowUnavailableError (civicnet.gateway.airflow_api): start Airflow; the batch waits in landing
└── TerminalError (schemas.errors): a person must act, as the message says; Airflow does not retry
    ├── ContractError (schemas.errors): fix the contract YAML at the place the message names
    ├── UnknownDivisionError (schemas.errors): use a code of the registry's vintage, or load its vintage
    ├── InvalidDivisionCodeError (schemas.errors): send the division code as 12 digits of text
    ├── NotAFolderError (schemas.homefiles; also NotADirectoryError): move the file that stands there away
    ├── UnknownShareGroupError (schemas.homefiles): create the group, or unset CIVICNET_SHARE_GROUP
    ├── UnknownLanguageError (schemas.i18n): ask for zh-CN (the default) or en
    ├── ReportingError (schemas.reporting): write the period as 2021, 2021Q2 or 2021-05, of a report's kind
    ├── NaiveTimeZoneError (schemas.i18n; also ValueError): the caller passes an aware time (a bug)
    ├── WriteRefusedError (schemas.rights): send the file to the dataset's owner department, as it says
    ├── FeedConfigError (connectors.feeds): fix the feed config file the message names
    ├── MissingConnectionError (connectors.secrets): define the Airflow connection the feed names
    ├── CursorError (connectors.cursor): fix 'cursor.field', or reset the feed's state after a look
    ├── UnreadablePayloadError (connectors.parse_limits): the department resends the file in its declared format
    │   ├── PayloadTooLargeError (connectors.parse_limits): the sender splits the file into smaller ones
    │   ├── NotTextError (connectors.parse_limits): the sender resends the file in its declared encoding
    │   └── TooManyColumnsError (connectors.parse_limits): the sender drops the columns nobody maps
    ├── RepeatedKeyError (connectors.parse_limits; also ValueError): the source names each JSON key once
    ├── RestSourceError (connectors.rest): fix the feed's path, params or records key, or the API is fixed
    ├── RestCredentialsError (connectors.rest): renew the credentials in the feed's Airflow connection
    ├── SqlSourceError (connectors.sql): fix the feed's URL, table or columns
    ├── SqlCredentialsError (connectors.sql): fix the login in the feed's Airflow connection
    ├── TapNotStartedError (connectors.singer): install the tap, or fix 'command' in the feed config
    ├── TapOutputError (connectors.singer): fix the tap to print only Singer messages, in order
    ├── TapCredentialsError (connectors.singer): fix the credentials in the tap's Airflow connection
    ├── SenderError (connectors.push.senders): give the sender options the message asks for
    ├── UploadRefusedError (connectors.push.uploads): the sender fixes the upload as the 4xx answer says
    ├── SourceColumnsError (quality.conform): map the columns in the feed config, or the department sends them
    ├── UnknownRuleError (quality.rules): run the civicnet that wrote the row, or restore its rule
    ├── NaiveTimeError (quality.freshness): the caller passes an aware datetime (a bug)
    ├── PageError (quality.page): give a run id of 1-128 plain characters
    ├── UnreadableBatchError (quality.stage): the department drops a corrected file
    ├── QualityGateFailedError (quality.stage): read check.json; the department resends
    ├── UndecidedBatchError (quality.rejection): ask again once the batch is applied or refused
    ├── OutboxPathError (quality.rejection): rename to a plain name, or remove the link out of the outbox
    ├── UnknownBatchError (warehouse.landing): check the batch id, or pull the feed again
    ├── ObjectStoreRefusedError (warehouse.objectstore): fix the store's credentials, bucket or URL
    ├── NodeLayoutError (warehouse.node): rebuild the home, or the node (`civicnet rebuild-node`)
    ├── NodeCorruptError (warehouse.node): rebuild the node from its parent (`civicnet rebuild-node`)
    ├── DiskFullError (warehouse.node): free space on that disk, then run again
    ├── ServerNodeLayoutError (warehouse.pgnode): rebuild the node (`civicnet rebuild-node`)
    ├── NodeStoreConfigError (warehouse.stores): fix the node's store URL (`civicnet nodes set CODE URL`)
    ├── CityNotRebuildableError (warehouse.network): put the city's last extract in place, ingest again
    ├── QuarantineCloseError (warehouse.merge): give --why, and only lines open in quarantine
    ├── ReviewRefusedError (warehouse.review): own unit, its parent, children first, or a lock exception
    ├── UnsupportedHistoryModeError (warehouse.merge): set the contract's history to scd2
    ├── ScopedBatchLinesError (warehouse.merge): check the batch again with this civicnet, then merge
    ├── EmptyHomeError (civicnet.settings): give --home a path (is a shell variable unset?)
    ├── ContradictoryOptionsError (civicnet.cli): leave out the option that does not apply
    ├── NoHomeError (civicnet.pipeline.home): make a home (`civicnet init`), or point --home at one
    ├── HomeNotEmptyError (civicnet.pipeline.home): choose a new or empty folder for the home
    ├── BatchNotCheckedError (civicnet.pipeline.ingest): run the batch's check, then the merge
    ├── ReconciliationError (civicnet.pipeline.verify): run `civicnet verify --repair`
    ├── RollupMismatchError (civicnet.pipeline.deliveries): run `civicnet verify --repair`, then deliver again
    ├── NoCityNodeError (civicnet.pipeline.verify): run the ingest and network DAGs (or the demo) first
    ├── LocalCheckError (civicnet.pipeline.push): fix the file as the local check says, then send it
    ├── DagsNotFoundError (civicnet.pipeline.runner.env): reinstall civicnet, or set CIVICNET_DAGS_FOLDER
    ├── DagRunFailedError (civicnet.pipeline.runner.session): read the run's log the message names
    ├── ServiceError (civicnet.pipeline.runner.server): read the component's log the message names
    │   ├── PortInUseError (civicnet.pipeline.runner.server): stop what holds the port, or give --port another
    │   ├── MetadataUnreachableError (civicnet.pipeline.runner.server): start PostgreSQL, or fix --postgres
    │   └── BrokerUnreachableError (civicnet.pipeline.runner.server): start Redis, or fix --redis
    ├── GatewayError (civicnet.gateway.app): the sender fixes the request as the 4xx answer says
    ├── GatewayStartError (civicnet.gateway.app): free the gateway's port, or give it another
    ├── DagPausedError (civicnet.gateway.trigger): unpause the ingest DAG; its next run takes the batches
    ├── UnknownTriggerError (civicnet.gateway.trigger): pass a known --trigger (and --airflow-url)
    ├── AirflowAuthError (civicnet.gateway.airflow_api): give the gateway's Airflow user a password and role
    ├── AirflowRequestError (civicnet.gateway.airflow_api): a defect: report Airflow's answer in the message
    ├── DemoHomeError (civicnet.demo.run): use another --home, or remove it (make clean)
    ├── DemoDataError (civicnet.demo.departments.residents): run the demo at a larger scale
    └── BadRequestError (civicnet.demo.departments.api; also ValueError): the client fixes the parameter
"""

from __future__ import annotations


class CivicnetError(Exception):
    """Base of every error civicnet raises on purpose."""

    transient = False


class TransientError(CivicnetError):
    """A retry may help: a timeout, a 5xx, a locked node."""

    transient = True


class TerminalError(CivicnetError):
    """A person must act: bad config, a contract violation, a failed quality gate."""


class ContractError(TerminalError):
    """A dataset contract file is malformed."""


class UnknownDivisionError(TerminalError):
    """A division code is not in the registry of its vintage."""


class InvalidDivisionCodeError(TerminalError):
    """A string is not a well-formed 12-digit division code."""
