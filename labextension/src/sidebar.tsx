import { Dialog, ReactWidget, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { Message } from '@lumino/messaging';
import React, { useEffect, useState } from 'react';

import { RunsModel } from './model';
import { ModelsView } from './models';
import { SchedulesView } from './schedules';
import { ResourcesView } from './resources';
import { RunsView } from './runs';
import { IRun } from './types';

/** Re-render on every change of the model. */
function useModel(model: RunsModel): number {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const bump = () => setTick(t => t + 1);
    model.changed.connect(bump);
    return () => {
      model.changed.disconnect(bump);
    };
  }, [model]);
  return tick;
}

function Sidebar(props: {
  model: RunsModel;
  open: (path: string) => void;
}): JSX.Element {
  const { model } = props;
  useModel(model);
  const [tab, setTab] = useState<'runs' | 'resources' | 'models' | 'schedules'>('runs');

  const stop = async (run: IRun) => {
    const again = model.isStopping(run.id);
    const answer = await showDialog({
      title: again ? 'Kill run?' : 'Stop run?',
      body: again
        ? `Run ${run.name || run.id} (${run.id}) is stopping. Kill it now? Work since its last checkpoint is lost.`
        : `Stop run ${run.name || run.id} (${run.id})? It gets SIGTERM, then SIGKILL after its grace period.`,
      buttons: again
        ? [Dialog.cancelButton(), Dialog.warnButton({ label: 'Kill now' })]
        : [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      await model.stop(run.id, again);
    } catch (error) {
      await showErrorMessage('Could not stop the run', String((error as Error).message));
    }
  };
  const open = async (run: IRun) => {
    try {
      props.open(await model.openRecord(run.id));
    } catch (error) {
      await showErrorMessage('Could not open the record', String((error as Error).message));
    }
  };

  return (
    <div className="jp-runctl-sidebar">
      <div className="jp-runctl-header">
        <button
          className={`jp-runctl-tab ${tab === 'runs' ? 'jp-mod-active' : ''}`}
          onClick={() => setTab('runs')}
        >
          Runs
        </button>
        <button
          className={`jp-runctl-tab jp-runctl-tab-resources ${tab === 'resources' ? 'jp-mod-active' : ''}`}
          onClick={() => setTab('resources')}
        >
          Resources
        </button>
        <button
          className={`jp-runctl-tab jp-runctl-tab-models ${tab === 'models' ? 'jp-mod-active' : ''}`}
          onClick={() => setTab('models')}
        >
          Models
        </button>
        <button
          className={`jp-runctl-tab jp-runctl-tab-schedules ${tab === 'schedules' ? 'jp-mod-active' : ''}`}
          onClick={() => setTab('schedules')}
        >
          Schedules
        </button>
      </div>
      {tab === 'runs' ? (
        <RunsView
          runs={model.runs}
          loaded={model.loaded}
          error={model.error}
          hasMore={model.hasMore}
          filters={model.filters}
          onFilters={f => model.setFilters(f)}
          onOpen={run => void open(run)}
          onStop={run => void stop(run)}
          stopping={id => model.isStopping(id)}
          onMore={() => model.loadMore()}
        />
      ) : tab === 'resources' ? (
        <ResourcesView model={model} />
      ) : tab === 'models' ? (
        <ModelsView model={model} />
      ) : (
        <SchedulesView model={model} />
      )}
    </div>
  );
}

/** The left-sidebar panel. The model polls runs only while it is shown. */
export class RunsSidebar extends ReactWidget {
  constructor(
    readonly model: RunsModel,
    private readonly _open: (path: string) => void
  ) {
    super();
    this.id = 'runctl-sidebar';
    this.addClass('jp-runctl');
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.paused = false;
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.paused = true;
  }

  render(): JSX.Element {
    return <Sidebar model={this.model} open={this._open} />;
  }
}
