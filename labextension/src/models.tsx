import React from 'react';

import { metric } from './format';
import { RunsModel } from './model';
import { usePolled } from './polled';
import { IModelVersion } from './types';

function metrics(v: IModelVersion): string {
  return Object.entries(v.metrics)
    .slice(0, 3)
    .map(([k, x]) => `${k}=${metric(x)}`)
    .join(' ');
}

/** The model registry: each name with its versions (newest first), their runs and
 * aliases. Fetched when the tab is shown and every 30 s while it stays visible. */
export function ModelsView(props: { model: RunsModel }): JSX.Element {
  const { value: models, error } = usePolled(() => props.model.models(), props.model);
  return (
    <div className="jp-runctl-models">
      {error && <div className="jp-runctl-error">{error}</div>}
      {models && models.models.length === 0 && (
        <div className="jp-runctl-note">
          No models yet: --register-model NAME on a train, or
          runctl.register_model(model, NAME) in a run.
        </div>
      )}
      {models?.models.map(m => (
        <div key={m.name} className="jp-runctl-model" data-model={m.name}>
          <div className="jp-runctl-model-name">
            <b>{m.name}</b>{' '}
            {Object.entries(m.aliases)
              .map(([a, v]) => `${a}=v${v}`)
              .join(' ')}
          </div>
          <table className="jp-runctl-model-table">
            <tbody>
              {m.versions.map(v => (
                <tr key={v.version} data-version={v.version}>
                  <td>v{v.version}</td>
                  <td>{v.aliases.join(', ')}</td>
                  <td>{v.run_id}</td>
                  <td>{metrics(v)}</td>
                  <td title={v.source ?? ''}>{v.sha256}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </div>
  );
}
