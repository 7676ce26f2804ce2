import React from 'react';

import { RunsModel } from './model';
import { usePolled } from './polled';

/** Schedules: when each fires next, its last run and that run's status (a failed
 * fired run shows here), and the last skip or refusal. Polled like Resources. */
export function SchedulesView(props: { model: RunsModel }): JSX.Element {
  const { value, error } = usePolled(() => props.model.schedules(), props.model);
  return (
    <div className="jp-runctl-models jp-runctl-schedules">
      {error && <div className="jp-runctl-error">{error}</div>}
      {value && value.schedules.length === 0 && (
        <div className="jp-runctl-note">
          No schedules: %runctl schedule add train.py --cron "0 3 * * 1"
        </div>
      )}
      <table className="jp-runctl-model-table">
        <tbody>
          {value?.schedules.map(s => (
            <tr key={s.name} data-schedule={s.name} title={s.note}>
              <td>
                <b>{s.name}</b>
              </td>
              <td>{s.target}</td>
              <td>{s.when}</td>
              <td>{s.enabled === 'yes' ? `next ${s.next ?? '-'}` : 'paused'}</td>
              <td>{s.last_run ?? ''}</td>
              <td className="jp-runctl-schedule-status">{s.status ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
