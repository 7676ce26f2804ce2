import React from 'react';

import { dollars, duration, metric } from './format';
import { IFilters } from './model';
import { Sparkline } from './sparkline';
import { IRun } from './types';

const STATUSES = [
  'active',
  'running',
  'queued',
  'succeeded',
  'failed',
  'stopped',
  'lost'
];

export interface IRunsViewProps {
  runs: IRun[];
  loaded: boolean;
  error: string | null;
  hasMore: boolean;
  filters: IFilters;
  onFilters: (filters: IFilters) => void;
  onOpen: (run: IRun) => void;
  onStop: (run: IRun) => void;
  onMore: () => void;
  stopping: (runId: string) => boolean;
}

/** The list of runs: every string from a run is a React text node. */
export function RunsView(props: IRunsViewProps): JSX.Element {
  const { filters } = props;
  return (
    <div className="jp-runctl-runs">
      <div className="jp-runctl-filters">
        <input
          className="jp-runctl-filter-experiment"
          placeholder="experiment"
          value={filters.experiment}
          onChange={e =>
            props.onFilters({ ...filters, experiment: e.currentTarget.value })
          }
        />
        <select
          className="jp-runctl-filter-status"
          value={filters.status}
          onChange={e =>
            props.onFilters({ ...filters, status: e.currentTarget.value })
          }
        >
          <option value="">all</option>
          {STATUSES.map(s => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </div>
      <div className="jp-runctl-filters">
        <input
          className="jp-runctl-filter-owner"
          placeholder="owner: all or a name"
          title="Teammates' runs too (c.Runctl.team): all, or one owner's; empty: this home's"
          value={filters.owner}
          onChange={e =>
            props.onFilters({ ...filters, owner: e.currentTarget.value.trim() })
          }
        />
        <input
          className="jp-runctl-filter-project"
          placeholder="project"
          value={filters.project}
          onChange={e =>
            props.onFilters({ ...filters, project: e.currentTarget.value.trim() })
          }
        />
      </div>
      {props.error && <div className="jp-runctl-error">{props.error}</div>}
      {props.loaded && props.runs.length === 0 && (
        <div className="jp-runctl-empty">
          No runs yet: put <code>%%runctl train</code> on top of a cell.
        </div>
      )}
      <ul className="jp-runctl-list">
        {props.runs.map(run => (
          <RunRow
            key={run.id}
            run={run}
            onOpen={props.onOpen}
            onStop={props.onStop}
            stopping={props.stopping(run.id)}
          />
        ))}
      </ul>
      {props.hasMore && (
        <button className="jp-runctl-more jp-mod-styled" onClick={props.onMore}>
          More runs
        </button>
      )}
    </div>
  );
}

function RunRow(props: {
  run: IRun;
  onOpen: (run: IRun) => void;
  onStop: (run: IRun) => void;
  stopping: boolean;
}): JSX.Element {
  const { run } = props;
  const shown = Object.entries(run.metrics).slice(0, 2);
  const title = run.team
    ? `${run.owner}’s run (team ${run.team}): compare ${run.owner}/${run.id}`
    : run.has_record
      ? 'Open the run’s record.ipynb'
      : 'record.ipynb is written when the run ends';
  const progress =
    run.active && run.total ? ` ${(run.last_step ?? 0) + 1}/${run.total}` : '';
  return (
    <li
      className="jp-runctl-run"
      data-run-id={run.id}
      data-status={run.status}
      data-owner={run.owner ?? ''}
      title={title}
      onClick={() => run.has_record && props.onOpen(run)}
    >
      <div className="jp-runctl-run-top">
        <span
          className={`jp-runctl-badge jp-runctl-status-${run.status}`}
          title={run.reason ? `${run.status} (${run.reason})` : run.status}
        >
          {run.status}
        </span>
        <span className="jp-runctl-name">{run.name || run.id}</span>
        <span className="jp-runctl-id">{run.id}</span>
        {run.team && <span className="jp-runctl-owner">{run.owner}</span>}
        {run.active && !run.team && (
          <button
            className="jp-runctl-stop jp-mod-styled"
            title={
              props.stopping
                ? 'Stopping: click to kill it now'
                : 'Stop this run (graceful)'
            }
            onClick={e => {
              e.stopPropagation();
              props.onStop(run);
            }}
          >
            {props.stopping ? 'Stopping…' : 'Stop'}
          </button>
        )}
      </div>
      <div className="jp-runctl-run-bottom">
        <span className="jp-runctl-experiment">
          {run.project && run.project !== 'default'
            ? `${run.project} / ${run.experiment}`
            : run.experiment}
        </span>
        <span className="jp-runctl-elapsed">
          {duration(run.duration)}
          {progress}
        </span>
        <span className="jp-runctl-cost">
          {run.backend === 'local' ? 'local' : dollars(run.cost)}
        </span>
      </div>
      {(shown.length > 0 || run.spark) && (
        <div className="jp-runctl-run-metrics">
          {shown.map(([k, v]) => (
            <span key={k} className="jp-runctl-metric">
              {k}={metric(v)}
            </span>
          ))}
          {run.spark && <Sparkline values={run.spark.values} />}
        </div>
      )}
      {run.error && (
        <div className="jp-runctl-run-error">
          {run.error.type}: {run.error.message}
        </div>
      )}
    </li>
  );
}
