import React from 'react';

import { dollars } from './format';
import { RunsModel } from './model';
import { usePolled } from './polled';

/** Running instances and other managed resources, burn rate and spend. Fetched
 * when the tab is shown and every 30 s while it stays shown and visible. */
export function ResourcesView(props: { model: RunsModel }): JSX.Element {
  const { value, error } = usePolled(
    () => Promise.all([props.model.resources(), props.model.cost()]),
    props.model
  );
  const [resources, cost] = value ?? [null, null];
  return (
    <div className="jp-runctl-resources">
      {error && <div className="jp-runctl-error">{error}</div>}
      <div className="jp-runctl-spend">
        <div>
          Burn rate:{' '}
          <b className="jp-runctl-burn">{dollars(resources?.rate ?? 0)}/h</b>
          {' · '}
          {resources?.running ?? 0} running
        </div>
        <div>
          Spend: <b className="jp-runctl-total">{dollars(cost?.total ?? 0)}</b>{' '}
          over {cost?.runs ?? 0} runs
        </div>
        {cost &&
          Object.entries(cost.by_experiment)
            .filter(([, v]) => v > 0)
            .slice(0, 5)
            .map(([k, v]) => (
              <div key={k} className="jp-runctl-spend-row">
                {k}: {dollars(v)}
              </div>
            ))}
      </div>
      {resources?.note && (
        <div className="jp-runctl-note">{resources.note}</div>
      )}
      <table className="jp-runctl-resource-table">
        <tbody>
          {resources?.resources.map(r => (
            <tr key={`${r.kind}:${r.id}`} data-resource-id={r.id}>
              <td>{r.kind}</td>
              <td>{r.id}</td>
              <td>{r.state}</td>
              <td>{r.detail}</td>
              <td>{r.rate === null ? '' : `${dollars(r.rate)}/h`}</td>
              <td>{r.run ? `${r.run} (${r.run_status ?? '?'})` : ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
